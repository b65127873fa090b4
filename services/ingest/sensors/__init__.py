"""Sensors: the registry, threshold rules, and the MQTT intake's evaluation of readings."""
