// Opens a page in headless Chromium (puppeteer-core, the browser from the system), waits until its
// title reads "fm2onnx: done" or "fm2onnx: error", and prints one JSON line on stdout:
// { title, result: <JSON text of #result>, log: [console messages, page errors, failed requests] }.
// Usage: node browser.mjs <chromium> <url> [timeout ms]. runtime_tests/test_browser.py runs it.

import puppeteer from 'puppeteer-core';

const [executablePath, url, timeoutArg] = process.argv.slice(2);
const timeout = Number(timeoutArg ?? 60000);

// as root Chromium refuses to start without --no-sandbox (CI runs as root)
const args = process.getuid?.() === 0 ? ['--no-sandbox'] : [];

function collectLog(page) {
  const log = [];
  page.on('console', (message) => log.push(`console.${message.type()}: ${message.text()}`));
  page.on('pageerror', (error) => log.push(`page error: ${error.message}`));
  page.on('requestfailed', (request) => log.push(`request failed: ${request.url()} ${request.failure()?.errorText}`));
  page.on('response', (response) => { if (!response.ok()) log.push(`HTTP ${response.status()}: ${response.url()}`); });
  return log;
}

async function run(browser) {
  const page = await browser.newPage();
  const log = collectLog(page);
  await page.goto(url);
  try {
    await page.waitForFunction(() => /^fm2onnx: (done|error)$/.test(document.title), { timeout });
  } catch (error) {
    log.push(`waiting for the page: ${error.message}`);
  }
  const title = await page.title();
  const result = await page.$eval('#result', (element) => element.textContent);
  return { title, result, log };
}

const browser = await puppeteer.launch({ executablePath, headless: true, args });
try {
  const report = await run(browser);
  console.log(JSON.stringify(report));
  process.exitCode = report.title === 'fm2onnx: done' ? 0 : 1;
} finally {
  await browser.close();
}
