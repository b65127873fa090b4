// Chinese by default, English on request; the choice is remembered. Pages register their own
// phrases with `phrases({zh: {...}, en: {...}})` and mark elements with data-i18n="key".

const LANG = "cityhub.lang";
const table = { zh: {}, en: {} };
let lang = localStorage.getItem(LANG) || "zh";
const listeners = new Set();

export function phrases(more) {
  for (const code of Object.keys(table)) Object.assign(table[code], more[code] || {});
}

export function t(key, values = {}) {
  const text = table[lang][key] ?? table.zh[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

export function language() {
  return lang;
}

export function setLanguage(code) {
  lang = code;
  localStorage.setItem(LANG, code);
  document.documentElement.lang = code === "zh" ? "zh-CN" : "en";
  translate(document);
  for (const listener of listeners) listener(code);
}

export function onLanguage(listener) {
  listeners.add(listener);
}

export function translate(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
}

phrases({
  zh: {
    "signin.title": "登录", "signin.username": "用户名", "signin.password": "密码",
    "signin.submit": "登录", "signin.out": "退出", "lang.toggle": "English",
    "live.connecting": "连接中", "live.live": "实时", "live.reconnecting": "重连中",
    "live.resynced": "已重新同步", "live.signed-out": "已退出", "live.refused": "无权访问",
    "colour.red": "红", "colour.orange": "橙", "colour.yellow": "黄", "colour.blue": "蓝",
    "colour.green": "绿",
    "status.new": "待派遣", "status.dispatched": "已派遣", "status.accepted": "已签收",
    "status.in_progress": "处置中", "status.resolved": "待核查", "status.closed": "已结案",
    "status.parked": "挂起", "status.rejected": "不予立案",
  },
  en: {
    "signin.title": "Sign in", "signin.username": "User name", "signin.password": "Password",
    "signin.submit": "Sign in", "signin.out": "Sign out", "lang.toggle": "中文",
    "live.connecting": "connecting", "live.live": "live", "live.reconnecting": "reconnecting",
    "live.resynced": "resynced", "live.signed-out": "signed out", "live.refused": "refused",
    "colour.red": "red", "colour.orange": "orange", "colour.yellow": "yellow",
    "colour.blue": "blue", "colour.green": "green",
    "status.new": "new", "status.dispatched": "dispatched", "status.accepted": "accepted",
    "status.in_progress": "in progress", "status.resolved": "awaiting verification",
    "status.closed": "closed", "status.parked": "parked", "status.rejected": "rejected",
  },
});
