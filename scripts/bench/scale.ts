export async function runScale(_opts: {
  quick: boolean;
  log: (line: string) => void;
}): Promise<void> {
  throw new Error("not yet");
}
