// Validates an AsyncAPI document with the AsyncAPI initiative's own parser (its JSON schema and
// its Spectral rules): errors fail, warnings are printed.
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';

const path = process.argv[2];
const { document, diagnostics } = await new Parser().parse(readFileSync(path, 'utf8'));
const severities = ['error', 'warning', 'info', 'hint'];
for (const d of diagnostics) {
  console.log(`${severities[d.severity]}: ${d.code}: ${d.message} (at ${d.path.join('.') || 'the top'})`);
}
const errors = diagnostics.filter((d) => d.severity === 0).length;
if (!document || errors > 0) {
  console.error(`${path}: ${errors} error(s)`);
  process.exit(1);
}
console.log(`${path}: valid AsyncAPI ${document.version()}: ${document.channels().length} channels, ${document.allMessages().length} messages`);
