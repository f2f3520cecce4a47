// serve.mjs -- starts `gpt2c serve` on a free port for the Node tests, and the
// CLI's answer for comparison. Usage from a test: const s = await startServer(BUILD, MODEL, [...args]).
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export async function startServer(build, model, args = []) {
  const portFile = join(mkdtempSync(join(tmpdir(), "gpt2c-node-")), "port");
  const proc = spawn(join(build, "gpt2c"), ["serve", "-m", model, "--port", "0", "--port-file", portFile, "--quiet", ...args],
                     { stdio: ["ignore", "inherit", "inherit"] });
  for (let i = 0; i < 600; i++) {
    if (existsSync(portFile) && readFileSync(portFile, "utf8").trim()) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const port = Number(readFileSync(portFile, "utf8"));
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(`http://127.0.0.1:${port}/health`)).ok) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  const stop = () => new Promise((resolve) => {
    proc.on("exit", (code) => { rmSync(dirname(portFile), { recursive: true, force: true }); resolve(code); });
    proc.kill("SIGTERM");
  });
  return { port, url: `http://127.0.0.1:${port}`, stop };
}

// The CLI's JSON answer for the same model and options.
export function cliGenerate(build, model, args) {
  const r = spawnSync(join(build, "gpt2c"), ["generate", "-m", model, "--json", "--no-stream", ...args], { encoding: "utf8" });
  if (r.status !== 0) throw new Error("gpt2c generate failed: " + r.stderr);
  return JSON.parse(r.stdout);
}

// A tiny assertion counter shared by the tests: prints "<name>: N passed, N failed".
export function checker(name) {
  const res = { pass: 0, fail: 0 };
  return {
    check(cond, what) { if (cond) res.pass++; else { res.fail++; console.log("FAIL:", what); } },
    done() { console.log(`${name}: ${res.pass} passed, ${res.fail} failed`); process.exit(res.fail ? 1 : 0); },
  };
}
