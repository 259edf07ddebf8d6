// Validates an OpenAPI document against the OpenAPI 3 schema and resolves
// every $ref (@apidevtools/swagger-parser), then checks what the edge
// promises: every operation has an operationId, a 200 and a default
// response, and every path parameter is declared.
//
//   node validate.js generated/openapi.json
"use strict";

const SwaggerParser = require("@apidevtools/swagger-parser");

async function main() {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: node validate.js OPENAPI.json");
    process.exit(2);
  }
  const api = await SwaggerParser.validate(file);
  const problems = [];
  let ops = 0;
  for (const [path, item] of Object.entries(api.paths)) {
    const wanted = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
    for (const [verb, op] of Object.entries(item)) {
      ops++;
      const where = `${verb.toUpperCase()} ${path}`;
      if (!op.operationId) problems.push(`${where}: no operationId`);
      if (!op.responses || !op.responses["200"] || !op.responses.default)
        problems.push(`${where}: needs a 200 and a default response`);
      const declared = (op.parameters || []).filter((p) => p.in === "path").map((p) => p.name);
      for (const w of wanted)
        if (!declared.includes(w)) problems.push(`${where}: path parameter ${w} not declared`);
    }
  }
  if (ops === 0) problems.push("no operations at all");
  if (problems.length) {
    for (const p of problems) console.error(p);
    process.exit(1);
  }
  console.log(`${file}: valid OpenAPI ${api.openapi}, ${Object.keys(api.paths).length} paths, ${ops} operations`);
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
