// "Report a problem": a category, a description, the phone's position and photos, queued in
// the outbox as a grid report (its key is the report's source_ref: sent twice, stored once).
import { language, t } from "./i18n.js";
import { el } from "./field_tasks.js";
import { preparePhotos, previewPhotos } from "./field_photos.js";

const POSITION_TIMEOUT_MS = 20_000;
const POSITION_MAX_AGE_MS = 60_000;

export class ReportForm {
  // form: the <form> of field.html's report view; outbox: field_queue.js Outbox.
  constructor(form, { outbox, categories }) {
    this.form = form;
    this.outbox = outbox;
    this.categories = categories;
    this.position = null;
    this.where = form.querySelector(".position");
    this.message = form.querySelector(".message");
    this.photos = form.querySelector("input[name=photos]");
    this.previews = form.querySelector(".previews");
    form.querySelector(".locate").addEventListener("click", () => this.locate());
    this.photos.addEventListener("change", () => previewPhotos(this.photos, this.previews));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  // The category picker, grouped as the catalogue is (sensor alarms are not reported by hand).
  fill() {
    const select = this.form.querySelector("select[name=category]");
    const chosen = select.value;
    const groups = new Map();
    for (const category of this.categories.values()) {
      if (category.group === "sensor") continue;
      const major = language() === "en" ? category.major_en : category.major_zh;
      if (!groups.has(major)) groups.set(major, []);
      groups.get(major).push(category);
    }
    const pick = el("option", "", t("field.report.pick"));
    pick.value = "";
    select.replaceChildren(
      pick,
      ...[...groups].map(([major, categories]) => {
        const group = el("optgroup");
        group.label = major;
        group.append(
          ...categories.map((category) => {
            const option = el("option", "", language() === "en" ? category.name_en : category.name_zh);
            option.value = category.code;
            return option;
          }),
        );
        return group;
      }),
    );
    select.value = chosen;
  }

  shown() {
    if (!this.position) this.locate();
  }

  locate() {
    if (!navigator.geolocation) {
      this.where.textContent = t("field.report.no_position", { reason: "geolocation" });
      return;
    }
    this.where.textContent = t("field.report.locating");
    navigator.geolocation.getCurrentPosition(
      (position) => {
        const { longitude: lon, latitude: lat, accuracy } = position.coords;
        this.position = { lon, lat };
        this.where.dataset.located = "true";
        this.where.textContent = t("field.report.located", {
          lat: lat.toFixed(5), lon: lon.toFixed(5), accuracy: Math.round(accuracy),
        });
      },
      (error) => {
        this.where.dataset.located = "false";
        this.where.textContent = t("field.report.no_position", { reason: error.message });
      },
      { enableHighAccuracy: true, timeout: POSITION_TIMEOUT_MS, maximumAge: POSITION_MAX_AGE_MS },
    );
  }

  async submit() {
    const data = new FormData(this.form);
    if (!this.position) {
      this.message.className = "message error";
      this.message.textContent = t("field.report.need_position");
      return;
    }
    const button = this.form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const photos = await preparePhotos(this.photos);
      await this.outbox.addReport(
        {
          category: String(data.get("category")),
          description: String(data.get("description") ?? "").trim(),
          lon: this.position.lon,
          lat: this.position.lat,
        },
        photos,
      );
      this.form.reset();
      previewPhotos(this.photos, this.previews);
      this.message.className = "message ok";
      this.message.textContent = t("field.report.queued");
    } catch (error) {
      this.message.className = "message error";
      this.message.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  }
}
