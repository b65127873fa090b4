// The wall's words, Chinese first (the wall is read by a Chinese operations centre), and the
// formatting of its figures: rates, durations, time left, clock times.
import { language, phrases, t } from "./i18n.js";

phrases({
  zh: {
    "wall.title": "城市运行监测",
    "wall.metric": "着色",
    "wall.metric.backlog": "积压",
    "wall.metric.overdue": "超期",
    "wall.theme": "明/暗",
    "wall.loading": "加载中…",
    "wall.failed": "加载失败：{message}",
    "kpi.intake": "今日受理",
    "kpi.backlog": "积压工单",
    "kpi.overdue": "超期工单",
    "kpi.on_time": "按期结案率",
    "kpi.close_rate": "结案率",
    "kpi.rework": "返工率",
    "kpi.close_time": "平均结案时长",
    "kpi.satisfaction": "满意度",
    "kpi.score": "综合评价",
    "kpi.of_due": "应结案 {due}",
    "kpi.verifications": "核查 {n}",
    "kpi.closed_n": "结案 {n}",
    "kpi.callbacks": "回访 {n}",
    "kpi.parked": "挂账 {n}",
    "kpi.filed": "立案 {n}",
    "channel.hotline": "热线",
    "channel.sensor": "感知",
    "channel.grid": "网格",
    "channel.api": "接口",
    "rank.title": "综合评价排名",
    "rank.rank": "#",
    "rank.name": "名称",
    "rank.backlog": "积压",
    "rank.overdue": "超期",
    "rank.on_time": "按期结案率",
    "rank.score": "评分",
    "rank.grade": "等级",
    "rank.level.district": "区县",
    "rank.level.street": "街镇",
    "trend.title": "今日受理与结案（按小时）",
    "trend.since": "自 {time} 起实时统计",
    "trend.intake": "受理",
    "trend.closed": "结案",
    "alerts.title": "告警",
    "alerts.none": "暂无告警",
    "alerts.breach": "超时",
    "alerts.supervision": "督办",
    "alerts.emergency": "应急",
    "alerts.sensors": "离线设备",
    "alerts.dead_letters": "死信激增",
    "alerts.emergency_on": "平急转换：应急模式 · {area}",
    "feed.title": "工单动态",
    "feed.none": "等待工单变化…",
    "feed.recent": "近期",
    "legend.title": "{metric}",
    "units.hours": "{n} 小时",
    "units.minutes": "{n} 分钟",
    "units.days": "{n} 天",
    "left.remaining": "剩余 {time}",
    "left.over": "已超 {time}",
    "drawer.close": "关闭",
    "drawer.location": "位置",
    "drawer.channel": "来源渠道",
    "drawer.reports": "报告 {n} 次",
    "drawer.photos": "照片",
    "drawer.no_photos": "无照片",
    "drawer.deadlines": "时限",
    "drawer.accept_due": "受理时限",
    "drawer.handle_due": "处置时限",
    "drawer.department": "处置部门",
    "drawer.owner": "责任层级",
    "drawer.timeline": "处置过程",
    "drawer.priority": "等级",
    "drawer.emergency": "应急",
    "drawer.description": "描述",
    "drawer.unlocated": "未定位",
    "drawer.links": "外部附件",
    "priority.normal": "一般",
    "priority.urgent": "紧急",
    "priority.critical": "特急",
    "tier.city": "市级",
    "tier.district": "区级",
    "tier.street": "街镇级",
    "action.create": "立案",
    "action.report": "新增报告",
    "action.dispatch": "派遣",
    "action.accept": "签收",
    "action.start": "开始处置",
    "action.resolve": "处置完成",
    "action.verify": "核查",
    "action.return": "回退",
    "action.reassign": "改派",
    "action.escalate": "上报",
    "action.defer": "延期",
    "action.park": "挂账",
    "action.reject": "不予立案",
    "action.comment": "备注",
    "action.callback": "回访",
    "action.merge": "合并",
    "action.split": "拆分",
    "action.overdue": "超时",
    "action.warning": "预警",
    "action.supervise": "督办",
    "action.close": "结案",
  },
  en: {
    "wall.title": "City operations",
    "wall.metric": "Colour by",
    "wall.metric.backlog": "backlog",
    "wall.metric.overdue": "overdue",
    "wall.theme": "Light/dark",
    "wall.loading": "Loading…",
    "wall.failed": "Loading failed: {message}",
    "kpi.intake": "Intake today",
    "kpi.backlog": "Backlog",
    "kpi.overdue": "Overdue",
    "kpi.on_time": "On-time close rate",
    "kpi.close_rate": "Close rate",
    "kpi.rework": "Rework rate",
    "kpi.close_time": "Mean time to close",
    "kpi.satisfaction": "Satisfaction",
    "kpi.score": "Score",
    "kpi.of_due": "due {due}",
    "kpi.verifications": "{n} verified",
    "kpi.closed_n": "{n} closed",
    "kpi.callbacks": "{n} call-backs",
    "kpi.parked": "{n} parked",
    "kpi.filed": "{n} filed",
    "channel.hotline": "hotline",
    "channel.sensor": "IoT",
    "channel.grid": "grid",
    "channel.api": "API",
    "rank.title": "Ranking by score",
    "rank.rank": "#",
    "rank.name": "Name",
    "rank.backlog": "Backlog",
    "rank.overdue": "Overdue",
    "rank.on_time": "On time",
    "rank.score": "Score",
    "rank.grade": "Grade",
    "rank.level.district": "districts",
    "rank.level.street": "streets",
    "trend.title": "Intake and closures today, by hour",
    "trend.since": "counted live since {time}",
    "trend.intake": "intake",
    "trend.closed": "closed",
    "alerts.title": "Alerts",
    "alerts.none": "No alerts",
    "alerts.breach": "breaches",
    "alerts.supervision": "supervision",
    "alerts.emergency": "emergency",
    "alerts.sensors": "sensors offline",
    "alerts.dead_letters": "dead-letter spikes",
    "alerts.emergency_on": "Emergency mode · {area}",
    "feed.title": "Ticket changes",
    "feed.none": "Waiting for ticket changes…",
    "feed.recent": "recent",
    "legend.title": "{metric}",
    "units.hours": "{n} h",
    "units.minutes": "{n} min",
    "units.days": "{n} d",
    "left.remaining": "{time} left",
    "left.over": "{time} over",
    "drawer.close": "Close",
    "drawer.location": "Location",
    "drawer.channel": "Channel",
    "drawer.reports": "{n} reports",
    "drawer.photos": "Photos",
    "drawer.no_photos": "No photos",
    "drawer.deadlines": "Deadlines",
    "drawer.accept_due": "Accept by",
    "drawer.handle_due": "Handle by",
    "drawer.department": "Department",
    "drawer.owner": "Owner",
    "drawer.timeline": "Timeline",
    "drawer.priority": "Priority",
    "drawer.emergency": "Emergency",
    "drawer.description": "Description",
    "drawer.unlocated": "not located",
    "drawer.links": "External attachments",
    "priority.normal": "normal",
    "priority.urgent": "urgent",
    "priority.critical": "critical",
    "tier.city": "city",
    "tier.district": "district",
    "tier.street": "street",
    "action.create": "filed",
    "action.report": "new report",
    "action.dispatch": "dispatched",
    "action.accept": "accepted",
    "action.start": "started",
    "action.resolve": "resolved",
    "action.verify": "verified",
    "action.return": "returned",
    "action.reassign": "reassigned",
    "action.escalate": "escalated",
    "action.defer": "deferred",
    "action.park": "parked",
    "action.reject": "rejected",
    "action.comment": "comment",
    "action.callback": "call-back",
    "action.merge": "merged",
    "action.split": "split",
    "action.overdue": "overdue",
    "action.warning": "warning",
    "action.supervise": "supervision",
    "action.close": "closed",
  },
});

const DASH = "—";

/** A share 0..1 as a percentage with one decimal; a dash for null. */
export function rate(value) {
  return value === null || value === undefined ? DASH : `${(value * 100).toFixed(1)}%`;
}

/** A whole number with thousands separators; a dash for null. */
export function count(value) {
  return value === null || value === undefined ? DASH : Number(value).toLocaleString("en-US");
}

/** A duration in seconds in the largest unit that keeps it readable. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  const minutes = Math.abs(seconds) / 60;
  if (minutes < 90) return t("units.minutes", { n: Math.round(minutes) });
  const hours = minutes / 60;
  if (hours < 48) return t("units.hours", { n: hours.toFixed(1) });
  return t("units.days", { n: (hours / 24).toFixed(1) });
}

/** "2 h 15 min left" or "35 min over" for a deadline. */
export function timeLeft(due, now = Date.now()) {
  if (!due) return DASH;
  const seconds = (Date.parse(due) - now) / 1000;
  return t(seconds >= 0 ? "left.remaining" : "left.over", { time: duration(seconds) });
}

// Date formatters are slow to build: one per language and shape, made on first use.
const formatters = new Map();

function formatter(shape) {
  const key = `${language()}:${shape}`;
  if (!formatters.has(key)) {
    const locale = language() === "zh" ? "zh-CN" : "en-GB";
    const options = shape === "clock"
      ? { hour12: false, hour: "2-digit", minute: "2-digit", second: "2-digit" }
      : { hour12: false, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" };
    formatters.set(key, new Intl.DateTimeFormat(locale, options));
  }
  return formatters.get(key);
}

/** Local clock time HH:MM:SS. */
export function clock(iso) {
  return formatter("clock").format(iso ? new Date(iso) : new Date());
}

/** Local date and time, short. */
export function when(iso) {
  return iso ? formatter("when").format(new Date(iso)) : DASH;
}

/** A timeline action's name (the code itself for an action this page has no words for). */
export function actionName(action) {
  const key = `action.${action}`;
  const text = t(key);
  return text === key ? action : text;
}

/** An element with a class and text (the wall builds its DOM with this, never innerHTML of data). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

export { DASH };
