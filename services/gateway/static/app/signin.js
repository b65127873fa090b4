// The sign-in form every page shows until its Session holds a token.
import { t, translate } from "./i18n.js";

export function signIn(session, container) {
  return new Promise((resolve) => {
    if (session.signedIn) {
      resolve();
      return;
    }
    container.innerHTML = `
      <form class="signin" autocomplete="on">
        <h1 data-i18n="signin.title"></h1>
        <label><span data-i18n="signin.username"></span>
          <input name="username" autocomplete="username" required></label>
        <label><span data-i18n="signin.password"></span>
          <input name="password" type="password" autocomplete="current-password" required></label>
        <p class="error" role="alert"></p>
        <button type="submit" data-i18n="signin.submit"></button>
      </form>`;
    translate(container);
    const form = container.querySelector("form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(form);
      try {
        await session.signIn(String(data.get("username")), String(data.get("password")));
        container.innerHTML = "";
        resolve();
      } catch (error) {
        form.querySelector(".error").textContent = error.message;
      }
    });
  });
}
