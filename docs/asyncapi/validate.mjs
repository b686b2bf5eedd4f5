// Validates AsyncAPI documents with the pinned @asyncapi/parser and checks the
// project's payload conventions. Usage: node docs/asyncapi/validate.mjs FILE...
// (no FILE: every *.asyncapi.yaml beside this script). Exit 1 on any error.
import { readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';
// ajv and ajv-formats come with @asyncapi/parser (pinned in package-lock.json).
import Ajv from 'ajv';
import addFormats from 'ajv-formats';

const here = dirname(fileURLToPath(import.meta.url));
const files = process.argv.slice(2).length > 0
  ? process.argv.slice(2).map((f) => resolve(f))
  : readdirSync(here).filter((f) => f.endsWith('.asyncapi.yaml')).sort().map((f) => join(here, f));

if (files.length === 0) {
  console.error('no AsyncAPI document found');
  process.exit(1);
}

const MONEY_MAX = 1_000_000_000_000;
// 2^63-1 as YAML gives it to JavaScript: the nearest double, 2^63.
const I64_MAX = 9223372036854775807;
const severityName = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

// The conventions of SPEC.md, checked on every payload and header schema.
function conventionErrors(doc) {
  const errors = [];
  const seen = new Set();
  const walk = (schema, where) => {
    if (!schema || typeof schema !== 'object' || seen.has(schema)) return;
    seen.add(schema);
    for (const [name, prop] of Object.entries(schema.properties ?? {})) {
      const at = `${where}.${name}`;
      if (!/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/.test(name)) errors.push(`${at}: property name is not snake_case`);
      const types = [].concat(prop.type ?? []);
      if (['price', 'amount'].includes(name)) {
        if (!types.includes('integer') || prop.minimum !== 1 || prop.maximum !== MONEY_MAX) {
          errors.push(`${at}: money must be an integer with minimum 1 and maximum ${MONEY_MAX}`);
        }
      }
      if (['balance', 'balance_after'].includes(name)) {
        if (!types.includes('integer') || prop.minimum !== 0) errors.push(`${at}: a balance must be an integer with minimum 0`);
      }
      if (name === 'id' || name.endsWith('_id')) {
        if (name !== 'message_id' && name !== 'request_id'
          && (!types.includes('integer') || prop.minimum !== 1 || prop.maximum !== I64_MAX)) {
          errors.push(`${at}: an id must be an integer in 1..=2^63-1`);
        }
      }
      if (name.endsWith('_at') && !(types.includes('string') && prop.format === 'date-time')) {
        errors.push(`${at}: a timestamp must be a string with format date-time`);
      }
      walk(prop, at);
    }
    for (const key of ['items', 'oneOf', 'anyOf', 'allOf']) {
      for (const sub of [].concat(schema[key] ?? [])) walk(sub, `${where}.${key}`);
    }
  };
  for (const message of doc.allMessages()) {
    const name = message.name() ?? message.id();
    if (message.hasPayload()) walk(message.payload().json(), `${name}.payload`);
    if (message.hasHeaders()) walk(message.headers().json(), `${name}.headers`);
  }
  return errors;
}

// Every message example must match its message's payload and headers schemas
// (the parser checks this for AsyncAPI 2 only).
function exampleErrors(doc) {
  const ajv = new Ajv({ strict: false, allErrors: true });
  addFormats(ajv);
  const errors = [];
  for (const message of doc.allMessages()) {
    const name = message.name() ?? message.id();
    const examples = message.examples().all();
    if (examples.length === 0) errors.push(`${name}: no example`);
    for (const [i, example] of examples.entries()) {
      const label = `${name}.examples[${example.name() ?? i}]`;
      for (const [part, has, schema, value] of [
        ['payload', message.hasPayload(), () => message.payload().json(), example.payload()],
        ['headers', message.hasHeaders(), () => message.headers().json(), example.headers()],
      ]) {
        if (!has) continue;
        if (value === undefined) { errors.push(`${label}: no ${part}`); continue; }
        const validate = ajv.compile(schema());
        if (!validate(value)) {
          for (const e of validate.errors) errors.push(`${label}.${part}${e.instancePath}: ${e.message}`);
        }
      }
    }
  }
  return errors;
}

const parser = new Parser();
let failed = false;
for (const file of files) {
  const shown = relative(process.cwd(), file);
  const { document, diagnostics } = await fromFile(parser, file).parse();
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  for (const d of diagnostics) {
    const path = d.path && d.path.length ? d.path.join('.') : '(root)';
    const line = d.range ? d.range.start.line + 1 : '?';
    console.log(`  ${severityName[d.severity] ?? d.severity}: ${shown}:${line} ${path}: ${d.message} [${d.code}]`);
  }
  if (!document || errors.length > 0) {
    console.log(`FAIL ${shown}: ${errors.length} error(s)`);
    failed = true;
    continue;
  }
  const version = document.version();
  const problems = [...conventionErrors(document), ...exampleErrors(document)];
  if (!version.startsWith('3.')) problems.push(`asyncapi is ${version}, expected 3.x`);
  if (document.channels().length === 0 || document.operations().length === 0 || document.allMessages().length === 0) {
    problems.push('the document must have channels, operations and messages');
  }
  for (const p of problems) console.log(`  error: ${shown}: ${p}`);
  if (problems.length > 0) {
    console.log(`FAIL ${shown}: ${problems.length} convention/example error(s)`);
    failed = true;
    continue;
  }
  const warnings = diagnostics.length - errors.length;
  console.log(`ok   ${shown}: AsyncAPI ${version}, ${document.channels().length} channels, `
    + `${document.operations().length} operations, ${document.allMessages().length} messages`
    + (warnings ? `, ${warnings} non-error diagnostic(s)` : ''));
}
process.exit(failed ? 1 : 0);
