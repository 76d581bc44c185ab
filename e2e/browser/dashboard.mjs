// Drives ebb's dashboard in headless Chromium against a running `ebb up`.
// Run by e2e/dashboard_test.go, which starts the server and passes:
//   BASE_URL        e.g. http://127.0.0.1:18080
//   CHROMIUM        path of the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR  where to write overview.png, pool.png, task.png (optional)
//   TOKEN           the server's token, if it has one: the browser signs in
//                   through the sign-in page, API calls send it as a bearer
// Every step asserts on the page; the first failure exits non-zero with the
// step's name, and the page's HTML is printed to help.
import { chromium } from "playwright-core";

const base = process.env.BASE_URL;
const shots = process.env.SCREENSHOT_DIR || "";
const token = process.env.TOKEN || "";
if (!base) {
  console.error("BASE_URL is not set");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
const page = await context.newPage();
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(String(e)));
page.on("dialog", (d) => { pageErrors.push("unexpected dialog: " + d.message()); d.dismiss(); });

let current = "";
async function step(name, fn) {
  current = name;
  const t0 = Date.now();
  await fn();
  console.log(`ok   ${name} (${Date.now() - t0} ms)`);
}
function check(cond, msg) {
  if (!cond) throw new Error(msg);
}
async function api(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: Object.assign(body ? { "content-type": "application/json" } : {}, token ? { authorization: "Bearer " + token } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
async function until(what, fn, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}
const cell = (queue, col) => `tr[data-queue="${queue}"] td[data-col="${col}"]`;
const num = (s) => Number(String(s).replace(/,/g, ""));

try {
  if (token) {
    await step("a guarded dashboard asks for the token, then lets the browser in", async () => {
      const res = await page.goto(base + "/");
      check(res.status() === 401, "overview without the token answered " + res.status());
      await page.fill('input[name="token"]', "not-the-token-000000");
      await page.click('button:has-text("Sign in")');
      await page.waitForSelector('input[name="token"]');
      check((await page.textContent(".flash")).includes("not right"), "a wrong token was not refused");
      await page.fill('input[name="token"]', token);
      await page.click('button:has-text("Sign in")');
      await page.waitForSelector('a.card.pool[data-pool="default"]');
    });
  }

  await step("overview opens with the pool at zero", async () => {
    await page.goto(base + "/");
    await page.waitForSelector('a.card.pool[data-pool="default"]');
    check(num(await page.textContent('[data-pool="default"] [data-testid="pool-current"]')) === 0, "pool should start at zero workers");
    // A marker that a reload would wipe: everything below must arrive live.
    await page.evaluate(() => { window.__noReload = 1; });
  });

  let ids = [];
  await step("tasks enqueued through the API show up without a reload", async () => {
    for (let i = 0; i < 24; i++) {
      const r = await api("POST", "/api/v1/tasks", { kind: "sleep", args: { ms: 1200 } });
      ids.push(r.id);
    }
    await page.waitForFunction((sel) => {
      const a = document.querySelector(sel[0]), b = document.querySelector(sel[1]), c = document.querySelector(sel[2]);
      return a && b && c && (Number(a.textContent.replace(/,/g, "")) + Number(b.textContent.replace(/,/g, "")) + Number(c.textContent.replace(/,/g, ""))) > 0;
    }, [cell("default", "queued"), cell("default", "in_flight"), cell("default", "succeeded")], { timeout: 15000 });
  });

  await step("a worker appears without a reload", async () => {
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-pool="default"] [data-testid="pool-current"]');
      return el && Number(el.textContent) >= 1;
    }, null, { timeout: 30000 });
    check(await page.evaluate(() => window.__noReload === 1), "the page reloaded");
  });

  await step("counts reach every task succeeded", async () => {
    await page.waitForFunction((sel) => {
      const el = document.querySelector(sel);
      return el && Number(el.textContent.replace(/,/g, "")) >= 24;
    }, cell("default", "succeeded"), { timeout: 60000 });
    check(await page.evaluate(() => window.__noReload === 1), "the page reloaded");
  });

  await step("the pool page charts the pool and lists its decisions", async () => {
    await page.goto(base + "/pools/default?span=5m");
    await page.waitForSelector("svg.chart path.workers");
    check(await page.locator("span.act-up").count() >= 1, "no scale-up decision listed");
    // Wait for the pool to breathe back to zero, live.
    await page.waitForFunction(() => {
      const el = document.querySelector('[data-testid="pool-current"]');
      return el && Number(el.textContent) === 0;
    }, null, { timeout: 45000 });
    await page.waitForSelector("span.act-down", { timeout: 15000 });
  });

  await step("task search finds a task and its page shows args and result", async () => {
    await page.goto(base + "/tasks?queue=default&state=succeeded&kind=sleep");
    await page.waitForSelector(`tr[data-task] a`);
    await page.click(`tr[data-task="${ids[0]}"] a`);
    await page.waitForSelector('[data-testid="task-state"]');
    check((await page.textContent('[data-testid="task-state"]')).includes("succeeded"), "task not succeeded");
    check((await page.textContent('[data-testid="task-args"]')).includes('"ms": 1200'), "args not shown");
    check((await page.textContent('[data-testid="task-result"]')).includes("slept_ms"), "result not shown");
  });

  let deadID;
  await step("retry a dead task from the dead letters", async () => {
    deadID = (await api("POST", "/api/v1/tasks", { kind: "fail", args: { message: "upstream said no <b>bold</b>" }, max_attempts: 1 })).id;
    await until("the task to die", async () => (await api("GET", "/api/v1/tasks/" + deadID)).state === "dead", 45000);
    await page.goto(base + "/queues/default/dead");
    await page.check(`tr[data-task="${deadID}"] input[type=checkbox]`);
    await page.click("text=Retry selected");
    await page.waitForSelector(".flash");
    check((await page.textContent(".flash")).includes("Retried 1 dead task"), "no retry confirmation message");
    // The retried task runs again (and fails again): two errors in its history.
    await until("the retried task to run again", async () => {
      const t = await api("GET", "/api/v1/tasks/" + deadID);
      return t.errors && t.errors.length === 2;
    }, 45000);
    await page.goto(base + "/tasks/" + deadID);
    check((await page.locator("ol.errors li").count()) === 2, "error history not shown");
    check((await page.textContent("ol.errors")).includes("upstream said no <b>bold</b>"), "error text not shown as text");
    if (shots) await page.screenshot({ path: shots + "/task.png", fullPage: true });
  });

  await step("pause a schedule", async () => {
    await api("POST", "/api/v1/schedules", { name: "nightly-report", cron: "0 3 * * *", kind: "noop", tz: "Europe/Berlin" });
    await page.goto(base + "/schedules");
    const row = 'tr[data-schedule="nightly-report"]';
    await page.waitForSelector(row);
    check((await page.textContent(row + ' td[data-col="state"]')).includes("active"), "schedule not active");
    await page.click(row + ' button:has-text("Pause")');
    await page.waitForSelector(".flash");
    check((await page.textContent(row + ' td[data-col="state"]')).includes("paused"), "schedule not shown paused");
    const s = (await api("GET", "/api/v1/schedules")).find((x) => x.name === "nightly-report");
    check(s && s.paused === true, "schedule not paused in the broker");
  });

  await step("task args with markup render inert", async () => {
    const evil = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">';
    const id = (await api("POST", "/api/v1/tasks", { kind: "sleep", args: { html: evil }, delay: "1h" })).id;
    await page.goto(base + "/tasks/" + id);
    await page.waitForSelector('[data-testid="task-args"]');
    check((await page.textContent('[data-testid="task-args"]')).includes(evil.replace(/"/g, '\\"')), "args not shown as text");
    check(await page.evaluate(() => window.__xss === undefined), "markup from task args ran");
    check((await page.locator('[data-testid="task-args"] img, [data-testid="task-args"] script').count()) === 0, "markup became elements");
  });

  if (shots) {
    // Screenshots for the README: a few waves of work, so the chart shows
    // the pool breathing from zero to max and back, and the overview caught
    // mid-wave.
    await step("screenshots of a pool breathing", async () => {
      const atZero = () => page.waitForFunction(() => {
        const el = document.querySelector('[data-testid="pool-current"]');
        return el && Number(el.textContent) === 0;
      }, null, { timeout: 60000 });
      for (const [n, ms] of [[30, 2500], [10, 1500], [60, 2000]]) {
        await page.goto(base + "/");
        for (let i = 0; i < n; i++) await api("POST", "/api/v1/tasks", { kind: "sleep", args: { ms } });
        if (n === 60) {
          await page.waitForFunction(() => {
            const el = document.querySelector('[data-pool="default"] [data-testid="pool-current"]');
            return el && Number(el.textContent) >= 2;
          }, null, { timeout: 30000 });
          await new Promise((r) => setTimeout(r, 2500));
          await page.screenshot({ path: shots + "/overview.png", fullPage: true });
        }
        await atZero();
      }
      await page.goto(base + "/pools/default?span=5m");
      await page.waitForSelector("svg.chart path.workers");
      await page.screenshot({ path: shots + "/pool.png", fullPage: true });
    });
  }

  await step("pages fit a phone screen", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const path of ["/", "/pools/default", "/tasks", "/workers", "/schedules"]) {
      await page.goto(base + path);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 1, `${path} is ${overflow}px wider than a phone screen`);
    }
  });

  check(pageErrors.length === 0, "errors in the page: " + pageErrors.join("; "));
  console.log("all dashboard steps passed");
} catch (e) {
  console.error(`FAIL ${current}: ${e.message}`);
  try { console.error("page URL: " + page.url() + "\n" + (await page.content()).slice(0, 4000)); } catch {}
  await browser.close();
  process.exit(1);
}
await browser.close();
