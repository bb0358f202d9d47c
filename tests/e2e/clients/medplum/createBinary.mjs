// Medplum's TypeScript client (@medplum/core, as package.json pins it) against a served fhirbin.
// tests/e2e/test_e2e_clients.py runs it as
//
//   FHIRBIN_E2E_BASE=http://127.0.0.1:PORT/fhir FHIRBIN_E2E_CLIENT_ID=… FHIRBIN_E2E_CLIENT_SECRET=… \
//     node createBinary.mjs
//
// and expects exit code 0. Each step prints one line "step: …" so a failure shows how far it got.
import assert from 'node:assert/strict';
import { MedplumClient } from '@medplum/core';

function env(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set`);
  }
  return value;
}

const base = env('FHIRBIN_E2E_BASE'); // http://127.0.0.1:PORT/fhir
const clientId = env('FHIRBIN_E2E_CLIENT_ID');
const clientSecret = env('FHIRBIN_E2E_CLIENT_SECRET');
const url = new URL(base);
const origin = `${url.protocol}//${url.host}/`;
const fhirPath = url.pathname.replace(/^\/+|\/+$/g, ''); // "fhir"

const medplum = new MedplumClient({
  baseUrl: origin,
  fhirUrlPath: fhirPath,
  tokenUrl: `${fhirPath}/auth/token`,
});

function step(name, detail) {
  console.log(`step: ${name}${detail === undefined ? '' : ' ' + JSON.stringify(detail)}`);
}

// 1. OAuth2 client_credentials at fhirbin's token endpoint (client_secret_post).
await medplum.startClientLogin(clientId, clientSecret);
const token = medplum.getAccessToken();
assert.ok(token, 'startClientLogin left no access token');
step('token', { length: token.length });

// 2. createBinary with raw bytes: every byte value, so nothing survives a text re-encoding.
const bytes = new Uint8Array(1024);
for (let i = 0; i < bytes.length; i++) {
  bytes[i] = (i * 7 + 3) % 256;
}
const contentType = 'application/octet-stream';
const created = await medplum.createBinary({
  data: bytes,
  contentType,
  securityContext: { reference: 'DocumentReference/medplum-e2e' },
});
step('createBinary', created);
assert.equal(typeof created, 'object', `createBinary resolved to ${typeof created}, not a Binary`);
assert.equal(created.resourceType, 'Binary');
assert.match(created.id, /^[A-Za-z0-9\-.]{1,64}$/);
assert.equal(created.meta?.versionId, '1');
assert.equal(created.contentType, contentType);
assert.equal(created.securityContext?.reference, 'DocumentReference/medplum-e2e');
assert.equal(created.data, undefined, 'the answer to a native create echoed the data');
const id = created.id;

// 3. readResource: Medplum asks for application/fhir+json (with */* at q=0.1), so the FHIR
// JSON Binary comes back, with the content in base64 data.
const read = await medplum.readResource('Binary', id);
step('readResource', { resourceType: read.resourceType, id: read.id, meta: read.meta });
assert.equal(read.resourceType, 'Binary');
assert.equal(read.id, id);
assert.equal(read.contentType, contentType);
assert.deepEqual(new Uint8Array(Buffer.from(read.data, 'base64')), bytes);

// 4. download: Accept */*, the native bytes.
const blob = await medplum.download(medplum.fhirUrl('Binary', id));
const downloaded = new Uint8Array(await blob.arrayBuffer());
step('download', { size: downloaded.length, type: blob.type });
assert.equal(blob.type, contentType);
assert.deepEqual(downloaded, bytes);

// 5. searchResources by _id.
const found = await medplum.searchResources('Binary', { _id: id });
step('searchResources', { count: found.length, ids: found.map((b) => b.id) });
assert.equal(found.length, 1);
assert.equal(found[0].id, id);
assert.deepEqual(new Uint8Array(Buffer.from(found[0].data, 'base64')), bytes);

// 6. createBinary with a filename: Medplum adds ?_filename=… to the create URL.
const text = new TextEncoder().encode('hello from medplum\n');
const named = await medplum.createBinary({ data: text, contentType: 'text/plain', filename: 'note.txt' });
step('createBinary with filename', named);
assert.equal(named?.resourceType, 'Binary');
assert.ok(named.id);
const namedBlob = await medplum.download(medplum.fhirUrl('Binary', named.id));
assert.deepEqual(new Uint8Array(await namedBlob.arrayBuffer()), text);

console.log('medplum: ok');
