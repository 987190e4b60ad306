import type { Command } from "commander";
import type { Agency } from "../../src/registry.ts";
import type { AdminContext } from "./context.ts";
import { formatTime, table } from "./output.ts";

/** `agencies` and `register-agency`. */
export function register(program: Command, ctx: AdminContext): void {
  program
    .command("agencies")
    .description("list registered agencies")
    .action(async () => {
      const agencies = await ctx.call<Agency[]>("agency.list");
      agencies.sort((a, b) => a.id.localeCompare(b.id));
      ctx.print(agencies, agencyTable);
    });

  program
    .command("register-agency")
    .description("register an agency, or update one")
    .argument("<id>", "agency id: lowercase letters, digits, - and _")
    .option("--name <name>", "full name of the agency")
    .option("--roles <roles>", "comma-separated: consumer, provider, subscriber, operator")
    .option("--contact <contact>", "contact of the agency's duty team")
    .action(async (id: string, opts: { name?: string; roles?: string; contact?: string }) => {
      const body: Record<string, unknown> = { id };
      if (opts.name !== undefined) body.name = opts.name;
      if (opts.roles !== undefined) body.roles = splitList(opts.roles);
      if (opts.contact !== undefined) body.contact = opts.contact;
      const agency = await ctx.call<Agency>("agency.put", body);
      ctx.print(agency, (a) => `registered agency ${a.id} (${a.roles.join(", ")})`);
    });
}

function agencyTable(agencies: Agency[]): string {
  return table(
    ["ID", "NAME", "ROLES", "CONTACT", "UPDATED"],
    agencies.map((a) => [a.id, a.name, a.roles.join(","), a.contact, formatTime(a.updatedAt)]),
  );
}

export function splitList(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}
