// Renders an HTML report (retention-cli report --html) in headless Chromium and
// fails on anything a reader's browser would complain about: a console error or
// warning, an uncaught page error, a request leaving the file (the page must work
// offline), a data block that is not JSON, or no chart drawn. Keeps a screenshot
// of the whole page, and a PDF of the print layout.
//
// usage: node scripts/render_report.mjs REPORT.html SHOT.png [PDF] [WIDTH] [HEIGHT]
// (PDF '-' for none; HEIGHT: only the top of the page in the screenshot, as the
// README's docs/report.png, which must stay small)
// CHROMIUM names the browser (default /usr/bin/chromium, Debian's package);
// playwright-core drives it and downloads no browser of its own.
import { chromium } from 'playwright-core';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [, , report, shot, pdf = '-', width = '1280', height] = process.argv;
if (!report || !shot) {
  console.error('usage: render_report.mjs REPORT.html SHOT.png [PDF] [WIDTH] [HEIGHT]');
  process.exit(2);
}
const url = pathToFileURL(resolve(report)).href;
const problems = [];
// Chromium refuses to start its sandbox as root (CI containers).
const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args,
});
try {
  const page = await browser.newPage({ viewport: { width: Number(width), height: 900 } });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') {
      problems.push(`console ${m.type()}: ${m.text()}`);
    }
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  page.on('request', (r) => {
    if (r.url() !== url && !r.url().startsWith('data:')) {
      problems.push(`the page fetches ${r.url()}`);
    }
  });
  const response = await page.goto(url, { waitUntil: 'load' });
  if (!response || !response.ok()) problems.push(`cannot load ${url}`);
  const bad = await page.$$eval('script', (els) =>
    els
      .map((e) => {
        if (e.type !== 'application/json') return `a script that runs: ${e.outerHTML.slice(0, 80)}`;
        try {
          JSON.parse(e.textContent);
          return null;
        } catch (x) {
          return `${e.id} is not JSON: ${x.message}`;
        }
      })
      .filter((x) => x),
  );
  problems.push(...bad);
  const charts = await page.$$eval('svg', (els) => els.filter((e) => e.getBBox().width > 0).length);
  const sections = await page.$$eval('section', (els) => els.length);
  if (sections !== 7) problems.push(`${sections} sections, not 7`);
  if (charts === 0 && !(await page.$('[data-missing]'))) problems.push('no chart and nothing said missing');
  if (height) {
    await page.screenshot({
      path: shot,
      fullPage: true,
      clip: { x: 0, y: 0, width: Number(width), height: Number(height) },
    });
  } else {
    await page.screenshot({ path: shot, fullPage: true });
  }
  if (pdf !== '-') {
    await page.emulateMedia({ media: 'print' });
    await page.pdf({ path: pdf, format: 'A4', printBackground: true });
  }
  if (problems.length) {
    console.error(`render_report: ${report}:\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
  } else {
    console.log(`render_report: ${report}: ${sections} sections, ${charts} charts, no console error; ${shot}`);
  }
} finally {
  await browser.close();
}
