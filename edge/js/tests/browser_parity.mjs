// Opens a page in headless Chromium (Debian's chromium) and prints window.edgeResult:
//   node browser_parity.mjs http://127.0.0.1:PORT/tests/page.html?key=HEX [ALLOWED_ORIGIN ...]
// The page may reach its own origin and the allowed ones, nothing else.
import puppeteer from 'puppeteer-core';

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
try {
  const page = await browser.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(m.text()));
  page.on('pageerror', (e) => logs.push(String(e)));
  // no network but this server: any other host is refused
  await page.setRequestInterception(true);
  const origins = [new URL(process.argv[2]).origin, ...process.argv.slice(3)];
  page.on('request', (r) => (origins.some((o) => r.url().startsWith(o)) || r.url().startsWith('data:') || r.url().startsWith('blob:') ? r.continue() : r.abort()));
  await page.goto(process.argv[2]);
  await page.waitForFunction('window.edgeResult !== undefined', { timeout: 120000 });
  const result = await page.evaluate('window.edgeResult');
  result.logs = logs;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
