// page_test.mjs BUILD MODEL -- the browser page of gpt2c serve in headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core): it shows the
// model, streams a greedy completion equal to the CLI's, and reports errors;
// with several models, it offers them and asks the one chosen.
import { chromium } from "playwright-core";
import { startServer, cliGenerate, checker } from "./serve.mjs";

const [build, model] = process.argv.slice(2);
const t = checker("page");
const srv = await startServer(build, model, ["--api-key", "sk-page", "--slots", "2"]);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                                        args: ["--no-sandbox", "--headless=new"] });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(srv.url + "/");
  // Without the key the page says why; with it, it names the model.
  await page.waitForFunction(() => document.getElementById("model").textContent !== "…");
  t.check(/key/i.test(await page.textContent("#model")), "without the key: the error is shown");
  t.check(await page.isVisible("#keyhint") && /API key/.test(await page.textContent("#keyhint")),
          "without the key: the hint beside the key field says what is missing");
  await page.fill("#key", "sk-page");
  await page.dispatchEvent("#key", "change");
  await page.waitForFunction(() => /^model: /.test(document.getElementById("model").textContent));
  t.check(!(await page.isVisible("#keyhint")), "with the key: the hint is gone");
  const prompt = "The meaning of life is";
  await page.fill("#prompt", prompt);
  await page.fill("#temperature", "0");
  await page.fill("#max_tokens", "12");
  await page.click("#go");
  await page.waitForSelector('#out[data-done="1"]', { timeout: 30000 });
  const want = cliGenerate(build, model, ["-p", prompt, "-n", "12", "--greedy"]).sequences[0].text;
  const got = await page.textContent("#generated");
  t.check(got === want, `streamed text equals the CLI: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
  t.check(/^done: \d+ tokens/.test(await page.textContent("#status")), "status reports the tokens");
  t.check((await page.textContent(".prompt")) === prompt, "the prompt is shown before the completion");
  // A bad value comes back as the server's message.
  await page.fill("#temperature", "7");
  await page.click("#go");
  await page.waitForFunction(() => /error 400/.test(document.getElementById("status").textContent), null, { timeout: 30000 });
  t.check(/temperature/.test(await page.textContent("#status")), "a 400 shows the server's message");
  t.check(errors.length === 0, "no JavaScript errors: " + errors.join("; "));
} finally {
  t.check((await srv.stop()) === 0, "server exits 0");
}
// Two models (the same folder under a second name): a choice between them; the
// chosen one, not yet loaded, serves the request.
const two = await startServer(build, model, ["-m", "second=" + model, "--slots", "2"]);
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(two.url + "/");
  await page.waitForFunction(() => document.getElementById("models").options.length === 2);
  t.check(await page.isVisible("#models") && /loads on first use/.test(await page.textContent("#model")),
          "several models: a choice, each loading on first use");
  await page.selectOption("#models", "second");
  await page.fill("#temperature", "0");
  await page.fill("#max_tokens", "8");
  await page.click("#go");
  await page.waitForSelector('#out[data-done="1"]', { timeout: 30000 });
  const want = cliGenerate(build, model, ["-p", await page.inputValue("#prompt"), "-n", "8", "--greedy"]).sequences[0].text;
  t.check((await page.textContent("#generated")) === want, "several models: the chosen model's text");
  const listed = await (await fetch(two.url + "/v1/models")).json();
  t.check(listed.data.map((m) => m.status).join() === "unloaded,loaded", "several models: the request went to the chosen one");
  t.check(errors.length === 0, "several models: no JavaScript errors: " + errors.join("; "));
} finally {
  await browser.close();
  t.check((await two.stop()) === 0, "several models: server exits 0");
}
t.done();
