/**
 * Meta routes: GET /diagnostics (token needed) and GET /openapi.json (open). Diagnostics name the
 * loaded LMKs by id and KCV, the version, uptime, per-operation counters and key-cache figures;
 * the service adds the audit log's position and the payShield interface's counters.
 */
import { BASE_ERRORS, type RouteSpec } from './route.js';
import { diagnosticsResponse } from './schemas.js';

export const META_ROUTES: readonly RouteSpec[] = [
  {
    method: 'GET',
    url: '/diagnostics',
    operationId: 'GetDiagnostics',
    summary: 'LMK ids and KCVs, version, uptime, operation counters, key cache, audit log position',
    tag: 'meta',
    response: diagnosticsResponse,
    errors: BASE_ERRORS,
    handler: (_i, d) => d.diagnostics(),
  },
];

/** The document route; its handler is replaced by one serving the built document. */
export const OPENAPI_ROUTE: RouteSpec = {
  method: 'GET',
  url: '/openapi.json',
  operationId: 'GetOpenApiDocument',
  summary: 'This OpenAPI 3.1 document (no token needed)',
  tag: 'meta',
  auth: false,
  errors: [500],
  handler: () => undefined,
};
