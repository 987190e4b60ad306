// `tsx scripts/bench/profile-summary.ts <file.cpuprofile> [top]`: where a
// V8 CPU profile (node --cpu-prof, as `npm run bench -- --profile` writes for
// the broker) spent its time: self time by function and by file or package.
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function main(): void {
  const [file, topArg] = process.argv.slice(2);
  if (!file) throw new Error("usage: profile-summary <file.cpuprofile> [top]");
  const top = Number(topArg ?? 30);
  const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const selfUs = selfTimes(profile);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    const place = placeOf(frame.url);
    const fn = `${frame.functionName || "(anonymous)"} ${place}:${frame.lineNumber + 1}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byPlace.set(place, (byPlace.get(place) ?? 0) + us);
  }
  console.log(`total ${(total / 1_000).toFixed(0)} ms sampled`);
  print("by file or package", byPlace, total, top);
  print("by function (self)", byFunction, total, top);
  print("the project's functions (inclusive)", inclusive(profile, selfUs), total, top);
}

/** Time under each of the project's own functions, callees included, counted once per stack. */
function inclusive(profile: Profile, selfUs: Map<number, number>): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const out = new Map<string, number>();
  const walk = (id: number, onStack: Set<string>): number => {
    const node = byId.get(id)!;
    const frame = node.callFrame;
    const place = placeOf(frame.url);
    const own = /^(src|actors|scripts)\//.test(place);
    const name = `${frame.functionName || "(anonymous)"} ${place}:${frame.lineNumber + 1}`;
    const fresh = own && !onStack.has(name);
    if (fresh) onStack.add(name);
    let us = selfUs.get(id) ?? 0;
    for (const child of node.children ?? []) us += walk(child, onStack);
    if (fresh) {
      onStack.delete(name);
      out.set(name, (out.get(name) ?? 0) + us);
    }
    return us;
  };
  walk(profile.nodes[0]!.id, new Set());
  return out;
}

function selfTimes(profile: Profile): Map<number, number> {
  const out = new Map<number, number>();
  profile.samples.forEach((id, i) => {
    out.set(id, (out.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  });
  return out;
}

/** A package name for code under node_modules, the repo path for the project's own. */
function placeOf(url: string): string {
  if (!url) return "(native)";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const repoAt = url.search(/\/(src|actors|scripts|cluster)\//);
  return repoAt >= 0 ? url.slice(repoAt + 1) : url.replace(/^file:\/\//, "");
}

function print(title: string, table: Map<string, number>, total: number, top: number): void {
  console.log(`\n${title}`);
  const rows = [...table.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [name, us] of rows) {
    console.log(`${((us / total) * 100).toFixed(1).padStart(5)}%  ${name}`);
  }
}

main();
