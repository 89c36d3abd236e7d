// Uses the types openapi-typescript generates from the OpenAPI document (tests/test_contract_tools.py
// writes them to api.d.ts beside a copy of this file), the way a control panel's frontend would.
// tsc --noEmit --strict must accept it: the operations, bodies and the Problem type are usable as is.
import type { components, operations, paths } from "./api";

type Problem = components["schemas"]["Problem"];
type TlsStatus = operations["getDomainTls"]["responses"][200]["content"]["application/json"];
type CertificatePage = operations["listCertificates"]["responses"][200]["content"]["application/json"];
type BindingRequest = operations["putBinding"]["requestBody"]["content"]["application/json"];
type BindingConflict = operations["putBinding"]["responses"][409]["content"]["application/problem+json"];
type ListCertificatesQuery = NonNullable<operations["listCertificates"]["parameters"]["query"]>;

export function mailHostname(status: TlsStatus): string {
  // What to tell mail users: mail.<domain>, or the server's host name when that one warns.
  return status.mail.recommended_client_hostname ?? status.server_hostname;
}

export function warnsFor(status: TlsStatus): string[] {
  const reasons: string[] = [...status.webmail.reasons, ...status.mail.reasons];
  return reasons.concat(status.warnings.map((w) => w.code));
}

export function expiringFirst(page: CertificatePage): string[] {
  return [...page.items].sort((a, b) => a.not_after.localeCompare(b.not_after)).map((c) => c.id);
}

export const query: ListCertificatesQuery = { covers: ["mail.example.com", "webmail.example.com"], limit: 50 };

export const picker: ListCertificatesQuery = { usable_for: "example.com", service: "both", sort: "-not_after" };

export function nextPage(page: CertificatePage): ListCertificatesQuery | null {
  // The opaque cursor is passed back unchanged; null means the last page.
  return page.next_cursor === null ? null : { ...query, cursor: page.next_cursor };
}

export function bind(certificateId: string): BindingRequest {
  return { certificate_id: certificateId };
}

export function explain(problem: Problem): string {
  switch (problem.code) {
    case "hostname_not_covered":
      return `The certificate does not cover ${problem.hostname ?? "the host name"}`;
    case "validation_error":
      return (problem.errors ?? []).map((e) => `${e.loc.join(".")}: ${e.message}`).join("; ");
    default:
      return problem.detail;
  }
}

export function sniAdvice(conflict: BindingConflict): string {
  // A 409 from putBinding can only be sni_unsupported: the generated type says so.
  const code: "sni_unsupported" = conflict.code;
  return `${code}: ${conflict.advice ?? ""} (${conflict.recommended_client_hostname ?? ""})`;
}

export type BindingPath = paths["/v1/domains/{name}/bindings/{service}"]["put"]["parameters"]["path"];
export const where: BindingPath = { name: "example.com", service: "mail" };

// DNS providers: a union discriminated by `kind`; narrowing on it gives each kind's own settings.
type DnsProviderRequest = operations["createDnsProvider"]["requestBody"]["content"]["application/json"];
type DnsProviderPage = operations["listDnsProviders"]["responses"][200]["content"]["application/json"];

export const cloudflare: DnsProviderRequest = {
  name: "example.com at Cloudflare",
  kind: "lexicon",
  settings: { provider: "cloudflare", options: { zone_id: "abc" }, credentials: { auth_token: "t" }, ttl: 120 },
};

export function describeProviders(page: DnsProviderPage): string[] {
  return page.items.map((p) => {
    // A platform provider read with a customer token: id, name and kind only (settings null).
    if (p.settings === null) {
      return `${p.name}: ${p.kind} (the platform's${p.usable ? ", usable" : ""})`;
    }
    switch (p.kind) {
      case "rfc2136":
        return `${p.name}: TSIG key ${p.settings.key_name} at ${p.settings.server}:${p.settings.port}`;
      case "lexicon":
        return `${p.name}: ${p.settings.provider} (${p.secrets_set.join(", ")})`;
    }
  });
}
