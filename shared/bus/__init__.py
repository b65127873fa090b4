"""The message bus: a `Bus` protocol with Redis Streams and in-process implementations."""

from shared.bus.base import Bus, DeadLetter, Delivery, PoisonMessageError
from shared.bus.consumer import Consumer, ConsumerConfig

__all__ = ["Bus", "Consumer", "ConsumerConfig", "DeadLetter", "Delivery", "PoisonMessageError"]
