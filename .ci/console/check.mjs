#!/usr/bin/env node
// The web console in a real browser: Debian's headless Chromium, driven by playwright-core.
//
// Starts the mock upstream and the gateway binary (route /openai -> mock, console on its own
// admin port), then checks as a person would: a browser without the admin key sees only the login
// page and the API refuses it; a wrong key is refused; the right key opens the console, whose live
// tail shows a request made through the gateway; the session cookie is HttpOnly and
// SameSite=Strict. Saves a screenshot, prints one line per check and
// `console_check: N passed, M failed`, exits non-zero on any failure.
//
//   node .ci/console/check.mjs --gateway target/debug/llm-forward \
//       --mock target/debug/examples/mock_upstream [--screenshot target/console.png]

import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, openSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const GATEWAY = args.gateway ?? "target/debug/llm-forward";
const MOCK = args.mock ?? "target/debug/examples/mock_upstream";
const SCREENSHOT = args.screenshot ?? "target/console.png";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ADMIN_KEY = "console-check-admin-key";
const READY_MS = 20000;

const dir = mkdtempSync(join(tmpdir(), "llmf-console-"));
const children = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function start(cmd, argv, name) {
  const log = openSync(join(dir, `${name}.log`), "a");
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", log], detached: true });
  children.push(child);
  return child;
}

function mockPort(child) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the mock did not report its port")), READY_MS);
    let seen = "";
    child.stdout.on("data", (d) => {
      seen += d;
      const m = /listening on \S+:(\d+)/.exec(seen);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
  });
}

async function waitFor(url, deadline = Date.now() + READY_MS) {
  for (;;) {
    try { await fetch(url); return; } catch (e) {
      if (Date.now() > deadline) throw new Error(`${url} not up: ${e}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

function stopAll() {
  for (const c of children) { try { process.kill(-c.pid, "SIGTERM"); } catch {} }
}
process.on("exit", stopAll);

const results = [];
async function check(name, fn) {
  try { await fn(); results.push(true); console.log(`ok   ${name}`); } catch (e) {
    results.push(false); console.log(`FAIL ${name}: ${e?.stack ?? e}`);
  }
}
function assert(cond, message) { if (!cond) throw new Error(message); }

let browser;
try {
  const mock = start(MOCK, ["--listen", "127.0.0.1:0"], "mock");
  const upstream = await mockPort(mock);
  const [proxyPort, adminPort] = [await freePort(), await freePort()];
  const config = join(dir, "console.yaml");
  writeFileSync(config, `server:
  listen: ["127.0.0.1:${proxyPort}"]
  pid_file: ${join(dir, "pid")}
  upgrade_sock: ${join(dir, "sock", "upgrade.sock")}
admin:
  listen: "127.0.0.1:${adminPort}"
  key: ${ADMIN_KEY}
  ui: true
routes:
  - {prefix: /openai, upstream: "http://127.0.0.1:${upstream}/v1", type: openai}
`);
  start(GATEWAY, ["run", "-c", config], "gateway");
  const proxy = `http://127.0.0.1:${proxyPort}`, admin = `http://127.0.0.1:${adminPort}`;
  await waitFor(`${proxy}/healthz`);
  await waitFor(`${admin}/`);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });

  await check("an unauthenticated browser sees only the login form", async () => {
    const page = await browser.newPage();
    await page.goto(admin + "/");
    await page.waitForSelector("#login-form", { state: "visible" });
    assert(await page.isHidden("#live"), "the live view is visible without a session");
    assert(await page.isHidden("#tabs"), "the navigation is visible without a session");
    for (const api of ["/api/overview", "/api/config", "/api/tail", "/api/session"]) {
      const status = await page.evaluate(async (u) => (await fetch(u)).status, api);
      assert(status === 401, `${api} answered ${status} without a session`);
    }
    await page.close();
  });

  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => console.log(`page error: ${e}`));
  page.on("console", (m) => { if (m.type() === "error") console.log(`page console: ${m.text()}`); });
  await check("a wrong key is refused", async () => {
    await page.goto(admin + "/");
    await page.fill("#login-key", "not-the-key");
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#login-error", { state: "visible" });
    assert(await page.isHidden("#live"), "signed in with a wrong key");
  });

  await check("the admin key opens the console", async () => {
    await page.fill("#login-key", ADMIN_KEY);
    await page.click("#login-form button[type=submit]");
    await page.waitForSelector("#live", { state: "visible" });
    await page.waitForFunction(() => document.querySelector("#tail-state").textContent.includes("live"));
  });

  await check("the session cookie is HttpOnly and SameSite=Strict", async () => {
    const cookie = (await context.cookies()).find((c) => c.name === "llmf_console");
    assert(cookie, "no session cookie");
    assert(cookie.httpOnly, "the cookie is readable by scripts");
    assert(cookie.sameSite === "Strict", `SameSite=${cookie.sameSite}`);
    assert(!(await page.evaluate(() => document.cookie)).includes("llmf_console"), "document.cookie shows it");
  });

  await check("requests through the gateway appear live", async () => {
    const chat = (model, stream) => fetch(`${proxy}/openai/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer sk-client" },
      body: JSON.stringify({ model, stream, messages: [{ role: "user", content: "hi" }] }),
    }).then(async (res) => { await res.text(); return res.status; });
    for (const [model, stream] of [["gpt-console-check", false], ["gpt-4o-mini", true], ["gpt-4o-mini", false]]) {
      const status = await chat(model, stream);
      assert(status === 200, `the gateway answered ${status}`);
    }
    await page.waitForSelector("#tail tr >> text=gpt-console-check", { timeout: 10000 });
    // The readiness probe (/healthz) went through the proxy too: 1 + 3 requests.
    await page.waitForFunction(() => document.querySelector("#totals").textContent.startsWith("4 requests"), null, { timeout: 5000 });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  await check("the config view masks nothing it should show and shows no secret", async () => {
    await page.click("#tabs button[data-tab=config]");
    await page.waitForFunction(() => document.querySelector("#config-text").value.includes("/openai"));
    const text = await page.inputValue("#config-text");
    assert(!text.includes(ADMIN_KEY), "the admin key is shown");
    await page.click("#validate");
    await page.waitForFunction(() => document.querySelector("#validate-result").textContent.includes("valid"));
  });

  await check("logging out ends the session", async () => {
    await page.click("#logout");
    await page.waitForSelector("#login-form", { state: "visible" });
    const status = await page.evaluate(async () => (await fetch("/api/overview")).status);
    assert(status === 401, `after logout /api/overview answered ${status}`);
  });
} catch (e) {
  results.push(false);
  console.log(`FAIL setup: ${e?.stack ?? e} (logs in ${dir})`);
} finally {
  if (browser) await browser.close();
  stopAll();
}
const passed = results.filter(Boolean).length, failed = results.length - passed;
console.log(`console_check: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
