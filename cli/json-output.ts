/**
 * Every `--json` output is a document that says what it is and what produced it: `format` and
 * `version` (bumped when the shape changes), `command`, and `inputs` (the options as given), beside
 * the command's own fields.
 */
export const JSON_FORMAT_VERSION = 1;

export function jsonDocument<T extends object>(command: string, inputs: object, body: T): { format: string; version: number; command: string; inputs: object } & T {
  const echoed: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(inputs)) if (k !== 'json' && v !== undefined) echoed[k] = v;
  return { format: `iommu-sim-${command}`, version: JSON_FORMAT_VERSION, command, inputs: echoed, ...body };
}
