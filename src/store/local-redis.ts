/**
 * A private redis-server for tests and `nexusquant bench resume`: started on a free loopback port in
 * a temporary directory, with persistence off, and stopped (directory removed) by stop(). The binary
 * is `redis-server` on the PATH (Debian's package), or NEXUSQUANT_REDIS_SERVER.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NexusQuantError } from "../errors.js";

export interface LocalRedis {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
}

export interface LocalRedisOptions {
  /** The server binary (default NEXUSQUANT_REDIS_SERVER, else "redis-server"). */
  binary?: string;
  /** How long to wait for "Ready to accept connections" (default 10 s). */
  startTimeoutMs?: number;
  /** More arguments for redis-server (e.g. ["--maxmemory", "64mb"]). */
  args?: string[];
}

/** A port the kernel says is free now (another process may take it before redis-server binds; we retry). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function startLocalRedis(options: LocalRedisOptions = {}): Promise<LocalRedis> {
  const binary = options.binary ?? process.env.NEXUSQUANT_REDIS_SERVER ?? "redis-server";
  const failures: string[] = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const dir = await mkdtemp(join(tmpdir(), "nq-redis-"));
    const port = await freePort();
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no", ...(options.args ?? [])];
    try {
      const child = await launch(binary, args, options.startTimeoutMs ?? 10_000);
      return {
        url: `redis://127.0.0.1:${port}`,
        port,
        pid: child.pid!,
        stop: async () => {
          await stopChild(child);
          await rm(dir, { recursive: true, force: true });
        },
      };
    } catch (e) {
      failures.push((e as Error).message);
      await rm(dir, { recursive: true, force: true });
      if ((e as NodeJS.ErrnoException).code === "ENOENT") break; // no binary: retrying will not help
    }
  }
  throw new NexusQuantError(
    "BACKEND_UNAVAILABLE",
    `redis-server could not be started (${failures.join("; ")}). Install it (Debian/Ubuntu: apt-get install redis-server) or set NEXUSQUANT_REDIS_SERVER to its path.`,
    { binary },
  );
}

function launch(binary: string, args: string[], timeoutMs: number): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${binary} was not ready within ${timeoutMs} ms: ${output.trim().split("\n").slice(-2).join(" | ")}`));
    }, timeoutMs);
    const onData = (d: Buffer) => {
      output += d.toString();
      if (output.includes("Ready to accept connections")) {
        clearTimeout(timer);
        child.stdout!.off("data", onData);
        child.stdout!.resume(); // keep draining, so the server never blocks on a full pipe
        child.stderr!.resume();
        resolve(child);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()));
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${binary} exited with ${code}: ${output.trim().split("\n").slice(-2).join(" | ")}`));
    });
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
  await exited;
  clearTimeout(timer);
}
