// Test support: starts `revisit serve` from the Cargo build on a free loopback port with a
// temporary data folder, and launches Debian's Chromium through playwright-core.

import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const WEB_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = resolve(WEB_DIR, '..');

/** Folder for screenshots and other files a person may want to look at after a run. */
export const OUTPUT_DIR = process.env.WEB_TEST_OUTPUT || join(WEB_DIR, 'test-output');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// Without the background-networking flags Chromium keeps calling Google's services, which a
// closed network refuses.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
];

export function revisitBinary() {
  if (process.env.REVISIT_BIN) return process.env.REVISIT_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(REPO_DIR, 'target');
  return join(target, 'debug', 'revisit');
}

/**
 * Starts `revisit serve --dev-clock` and resolves once it listens. The server writes JSON logs,
 * and its `revisit listening` line gives the address.
 */
export async function startServer(extraEnv = {}) {
  const binary = revisitBinary();
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: run cargo build -p revisit first`);
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'revisit-web-'));
  const child = spawn(
    binary,
    ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--dev-clock'],
    {
      env: { ...process.env, REVISIT_LOG_FORMAT: 'json', RUST_LOG: 'info', ...extraEnv },
      stdio: ['ignore', 'ignore', 'pipe']
    }
  );
  const logs = [];
  const address = await new Promise((resolveAddress, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line: ${logs.join('')}`)), 15000);
    let pending = '';
    child.stderr.on('data', (chunk) => {
      pending += chunk;
      logs.push(String(chunk));
      let newline;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        try {
          const record = JSON.parse(line);
          if (record.fields && record.fields.message === 'revisit listening') {
            clearTimeout(timer);
            resolveAddress(record.fields.address);
          }
        } catch {
          // Lines that are not JSON (a panic message) stay in `logs`.
        }
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`revisit serve exited with ${code}: ${logs.join('')}`));
    });
  });
  const origin = `http://${address}`;
  return {
    origin,
    dataDir,
    outboxDir: join(dataDir, 'outbox'),
    logs,
    async advanceClock(seconds) {
      const response = await fetch(`${origin}/__dev/clock`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ advance_seconds: seconds })
      });
      if (!response.ok) throw new Error(`moving the clock failed: ${response.status}`);
      return response.json();
    },
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((done) => child.once('exit', done));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    }
  };
}

/**
 * Serves `html` at every path from a second loopback origin, standing in for a storefront on
 * another origin than the collector. `setHtml` replaces the page.
 */
export async function startPageServer(html = '') {
  let current = html;
  const pages = createServer((request, response) => {
    response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    response.end(current);
  });
  await new Promise((listening) => pages.listen(0, '127.0.0.1', listening));
  return {
    origin: `http://127.0.0.1:${pages.address().port}`,
    setHtml(next) {
      current = next;
    },
    stop: () => new Promise((closed) => pages.close(closed))
  };
}

export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** Requests a destination wrote to the outbox, one parsed object per line. */
export function readOutbox(outboxDir, destination) {
  const file = join(outboxDir, `${destination}.jsonl`);
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
}

/** Polls `check` until it returns a truthy value, or fails after `timeoutMs`. */
export async function waitFor(check, what, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}
