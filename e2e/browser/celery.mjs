// Drives the dashboard of an `ebb server` with a Celery pool in headless
// Chromium. Run by e2e/celery_test.go, which passes:
//   BASE_URL  e.g. http://127.0.0.1:18080
//   CHROMIUM  path of the browser (default /usr/bin/chromium)
//   POOL      the Celery pool's name
// It prints "ready for tasks" once the overview shows the pool at zero; the
// test then sends tasks with .delay(). Every step asserts on the page; the
// first failure exits non-zero with the step's name and the page's HTML.
import { chromium } from "playwright-core";

const base = process.env.BASE_URL;
const pool = process.env.POOL;
if (!base || !pool) {
  console.error("BASE_URL and POOL must be set");
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(String(e)));

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
async function until(what, fn, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}
const card = () => page.locator(`[data-pool="${pool}"]`);
const cardWorkers = async () => Number(await card().locator('[data-testid="pool-current"]').textContent());

try {
  await step("overview shows the Celery pool at zero", async () => {
    await page.goto(base + "/");
    await until("the pool card", async () => (await card().count()) === 1);
    check((await card().textContent()).includes("celery"), "the pool card does not say celery");
    await until("0 workers", async () => (await cardWorkers()) === 0);
    await until("the live stream", async () => (await page.locator("#conn.ok, #conn").count()) > 0);
  });
  console.log("ready for tasks");
  let peak = 0;
  await step("the overview shows workers start, live", async () => {
    peak = await until("workers > 0 without a reload", async () => {
      const n = await cardWorkers();
      return n > 0 ? n : 0;
    }, 60000);
    const row = page.locator(`tr[data-queue="reports"]`);
    check((await row.count()) === 1, "the Celery queue is not in the queue table");
  });
  let worker = "";
  await step("a worker page shows a live Celery worker", async () => {
    // The pool may drain an idle worker between the list and its page (the
    // test keeps one worker busy with a long task), so a worker that went
    // away in between sends us back to the list for another.
    await until("the page of an online worker", async () => {
      await page.goto(base + "/celery");
      const rows = page.locator("tr[data-celery-worker]");
      let candidate = "";
      for (let i = 0; i < (await rows.count()); i++) {
        const r = rows.nth(i);
        if ((await r.locator('[data-testid="celery-alive"]').count()) > 0) {
          candidate = await r.getAttribute("data-celery-worker");
          break;
        }
      }
      if (!candidate) return "";
      await page.goto(base + "/celery/workers/" + encodeURIComponent(candidate));
      if ((await page.locator('[data-testid="celery-worker-status"]').textContent()) !== "online") return "";
      worker = candidate;
      return worker;
    }, 60000);
    check((await page.locator("form[action$='/shutdown'] button").count()) === 1, "no shutdown action");
    const pid = await page.locator(".facts div:nth-child(2) b").textContent();
    check(Number(pid) > 0, "no pid: " + pid);
  });
  await step("a Celery task page shows its result", async () => {
    const id = await until("a succeeded task", async () => {
      const res = await fetch(base + "/api/v1/celery/tasks?limit=100");
      const tasks = await res.json();
      const t = (tasks || []).find((t) => t.state === "SUCCESS");
      return t ? t.id : "";
    }, 60000);
    await page.goto(base + "/celery/tasks/" + id);
    check((await page.locator('[data-testid="celery-result-status"]').textContent()) === "SUCCESS", "result status");
    check((await page.locator('[data-testid="celery-result"]').textContent()).includes("slept"), "result body");
    check((await page.locator('[data-testid="celery-task-state"]').textContent()) === "SUCCESS", "event state");
    check((await page.locator("dl.kv").first().textContent()).includes("e2e.sleep"), "task name");
  });
  await step("the overview shows the pool back at zero, live", async () => {
    await page.goto(base + "/");
    const n = await cardWorkers();
    check(n > 0 || peak > 0, "never saw workers");
    await until("0 workers without a reload", async () => (await cardWorkers()) === 0, 90000);
  });
  check(pageErrors.length === 0, "page errors: " + pageErrors.join("; "));
  console.log("all celery steps passed");
} catch (e) {
  console.log(`FAIL ${current}: ${e.message}`);
  try {
    console.log((await page.content()).slice(0, 4000));
  } catch {}
  await browser.close();
  process.exit(1);
}
await browser.close();
