import { resolve } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The CA's two gRPC services, loaded from proto/ at run time. The directory is two
 * levels above this file both in src/ca (tests) and in dist/ca (the built CLI), so
 * one relative path serves both; packaging must ship proto/ next to dist/.
 */
export const PROTO_DIR = resolve(__dirname, '..', '..', 'proto');

/** Metadata key Istio's ztunnel uses to ask for a pod's identity. */
export const IMPERSONATED_IDENTITY = 'ImpersonatedIdentity';

/** google.protobuf.Struct as proto-loader decodes it (oneofs: true). */
export interface StructValue {
  stringValue?: string;
  numberValue?: number;
  boolValue?: boolean;
  kind?: string;
  [other: string]: unknown;
}
export interface Struct {
  fields?: Record<string, StructValue>;
}

export interface CertificateRequest {
  csr: string;
  /** Seconds; 0 = the CA's default. */
  validityDuration: number;
  metadata?: Struct | null;
}
export interface CertificateResponse {
  certChain: string[];
}
export interface JoinRequest {
  nodeName: string;
  /** A Weft join token; empty when `serviceAccountToken` is sent. */
  token: string;
  csr: string;
  /** A projected Kubernetes ServiceAccount token (field 4); absent or empty with a join token. */
  serviceAccountToken?: string;
}
export interface JoinResponse {
  certChain: string[];
}

interface LoadedServices {
  certificateService: grpc.ServiceClientConstructor;
  nodeBootstrap: grpc.ServiceClientConstructor;
}

let loaded: LoadedServices | undefined;

/** Loads once per process; loading parses the .proto files, which is not free. */
export function services(): LoadedServices {
  if (loaded) return loaded;
  const definition = protoLoader.loadSync(['istio/v1/auth/ca.proto', 'weft/v1/bootstrap.proto'], {
    includeDirs: [PROTO_DIR],
    // Seconds fit easily in a double; plain numbers keep the TypeScript simple.
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } };
    weft: { v1: { NodeBootstrap: grpc.ServiceClientConstructor } };
  };
  loaded = {
    certificateService: pkg.istio.v1.auth.IstioCertificateService,
    nodeBootstrap: pkg.weft.v1.NodeBootstrap,
  };
  return loaded;
}

export function impersonationMetadata(identity: string): Struct {
  return { fields: { [IMPERSONATED_IDENTITY]: { stringValue: identity, kind: 'stringValue' } } };
}

/** Reads ImpersonatedIdentity; undefined when absent, throws a string when present but not a string. */
export function readImpersonatedIdentity(metadata: Struct | null | undefined): string | undefined {
  const value = metadata?.fields?.[IMPERSONATED_IDENTITY];
  if (value === undefined) return undefined;
  if (typeof value.stringValue !== 'string' || value.stringValue === '') {
    throw new Error(`metadata ${IMPERSONATED_IDENTITY} must be a non-empty string`);
  }
  return value.stringValue;
}
