// Writes the package-lock.json of the pack-check app: the packed tarball plus its production
// dependency tree exactly as the repository's package-lock.json resolved it (versions, integrity).
// With that lock, `npm ci --offline` installs from the npm cache alone: it needs the tarballs
// (`npm ci` of the repository cached them) but not the registry metadata an install by range needs.
// Usage (in the app's folder): node app-lock.mjs <repo> <tarball file name in the parent folder> [registry] [extra,deps]
// Writes package.json and package-lock.json there; .ci/pack-check.sh runs it. `extra,deps`: packages
// of the repository's lock the app also depends on directly (at the lock's versions), as in
// `npm install nexusquant @huggingface/transformers onnxruntime-node`.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [repo, tarball, registryArg, extraArg] = process.argv.slice(2);
const extras = (extraArg ?? "").split(",").filter(Boolean);
const registry = (registryArg ?? "https://registry.npmjs.org/").replace(/\/?$/, "/");
const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8"));
const pk = lock.packages;
const root = pk[""];

// Node's resolution over the lock's paths: the nearest node_modules/<name> from `from` upwards.
function resolve(from, name) {
  let dir = from;
  for (;;) {
    const candidate = `${dir ? `${dir}/` : ""}node_modules/${name}`;
    if (pk[candidate]) return candidate;
    if (!dir) return undefined;
    const i = dir.lastIndexOf("node_modules/");
    dir = i <= 0 ? "" : dir.slice(0, i - 1);
  }
}

const out = {};
const queue = [["", root]];
const seen = new Set();
// The app's own direct dependencies beside nexusquant: walked from the top of the tree like the rest.
const extraDeps = {};
for (const name of extras) {
  const at = `node_modules/${name}`;
  if (!pk[at]) throw new Error(`${name} is not at the top of the repository's lock`);
  extraDeps[name] = pk[at].version;
  queue.push(["", { dependencies: { [name]: pk[at].version } }]);
}
while (queue.length > 0) {
  const [path, entry] = queue.shift();
  const optionalPeers = new Set(Object.entries(entry.peerDependenciesMeta ?? {}).filter(([, m]) => m.optional).map(([n]) => n));
  const wanted = [
    ...Object.keys(entry.dependencies ?? {}).map((n) => [n, false]),
    ...Object.keys(entry.optionalDependencies ?? {}).map((n) => [n, true]),
    ...Object.keys(entry.peerDependencies ?? {}).map((n) => [n, optionalPeers.has(n)]),
  ];
  for (const [name, optional] of wanted) {
    const at = resolve(path, name);
    if (at === undefined) {
      if (optional) continue;
      throw new Error(`${path || "the package"} needs ${name}, which the repository's lock does not hold`);
    }
    if (seen.has(at)) continue;
    seen.add(at);
    const { dev, devOptional, peer, ...copy } = pk[at]; // flags of the repository's tree, not the app's
    // The repository's lock leaves out registry URLs; without one npm would fetch the package's
    // metadata to find its tarball. With it (and the integrity) the cached tarball is enough.
    const pkgName = at.slice(at.lastIndexOf("node_modules/") + "node_modules/".length);
    if (!copy.resolved && !copy.link) copy.resolved = `${registry}${pkgName}/-/${pkgName.split("/").pop()}-${copy.version}.tgz`;
    out[at] = copy;
    queue.push([at, pk[at]]);
  }
}

const spec = `file:../${tarball}`;
const { name, devDependencies, ...pkgEntry } = root;
const app = {
  name: "pack-check-app",
  lockfileVersion: 3,
  requires: true,
  packages: {
    "": { name: "pack-check-app", dependencies: { [name]: spec, ...extraDeps } },
    [`node_modules/${name}`]: { ...pkgEntry, resolved: spec },
    ...out,
  },
};
writeFileSync("package-lock.json", JSON.stringify(app, null, 2) + "\n");
writeFileSync("package.json", JSON.stringify({ name: "pack-check-app", private: true, type: "module", dependencies: { [name]: spec, ...extraDeps } }, null, 2) + "\n");
console.log(`${Object.keys(out).length} production packages locked`);
