import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, connect, isIP, type LookupFunction, type Socket } from 'node:net';
import { Agent, buildConnector } from 'undici';
import { cidrList } from '../config.ts';
import { HeraldError } from '../errors.ts';

/*
 * Outbound requests (webhooks, write-backs) must not reach Herald's own network: a URL an admin or a source
 * chose could otherwise probe internal services or the cloud metadata endpoint (server-side request forgery).
 * Every address is checked at connect time, after DNS resolution, so a name that resolves to an internal
 * address (DNS rebinding) is refused too; `HERALD_OUTBOUND_ALLOW` lists ranges that may be reached anyway.
 */

// Address ranges that are not the public internet (IANA special-purpose registries, RFC 6890).
const DENIED_V4: [string, number, string][] = [
  ['0.0.0.0', 8, 'a "this network" address'],
  ['10.0.0.0', 8, 'a private address'],
  ['100.64.0.0', 10, 'a shared (CGNAT) address'],
  ['127.0.0.0', 8, 'a loopback address'],
  ['169.254.0.0', 16, 'a link-local address'],
  ['172.16.0.0', 12, 'a private address'],
  ['192.0.0.0', 24, 'a reserved address'],
  ['192.0.2.0', 24, 'a documentation address'],
  ['192.88.99.0', 24, 'a reserved address'],
  ['192.168.0.0', 16, 'a private address'],
  ['198.18.0.0', 15, 'a benchmarking address'],
  ['198.51.100.0', 24, 'a documentation address'],
  ['203.0.113.0', 24, 'a documentation address'],
  ['224.0.0.0', 4, 'a multicast address'],
  ['240.0.0.0', 4, 'a reserved address'],
];

const DENIED_V6: [string, number, string][] = [
  ['::', 128, 'the unspecified address'],
  ['::1', 128, 'a loopback address'],
  ['::', 96, 'a deprecated IPv4-compatible address'],
  ['64:ff9b:1::', 48, 'a local-use NAT64 address'],
  ['100::', 64, 'a discard address'],
  ['2001:2::', 48, 'a benchmarking address'],
  ['2001:db8::', 32, 'a documentation address'],
  ['2002::', 16, 'a 6to4 address'],
  ['fc00::', 7, 'a unique-local address'],
  ['fe80::', 10, 'a link-local address'],
  ['fec0::', 10, 'a site-local address'],
  ['ff00::', 8, 'a multicast address'],
];

// One BlockList per reason, so a refusal can say why. Node's BlockList matches IPv4-mapped IPv6 addresses
// (`::ffff:127.0.0.1`) against IPv4 rules; NAT64 forms (`64:ff9b::a00:1`) are added explicitly.
const DENIED: { list: BlockList; reason: string }[] = [];
for (const [address, prefix, reason] of DENIED_V4) {
  const list = new BlockList();
  list.addSubnet(address, prefix, 'ipv4');
  list.addSubnet(`64:ff9b::${address}`, 96 + prefix, 'ipv6');
  DENIED.push({ list, reason });
}
for (const [address, prefix, reason] of DENIED_V6) {
  const list = new BlockList();
  list.addSubnet(address, prefix, 'ipv6');
  DENIED.push({ list, reason });
}

/** An outbound connection refused because of where it would go. */
export class UnsafeAddressError extends Error {
  override name = 'UnsafeAddressError';
  readonly code = 'ERR_UNSAFE_ADDRESS';
}

/** Why `address` (a literal IPv4 or IPv6 address) may not be reached, or null when it may. */
export function refusal(address: string, allow: BlockList): string | null {
  const family = isIP(address);
  if (family === 0) return 'not an IP address';
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (allow.check(address, type)) return null;
  for (const { list, reason } of DENIED) {
    if (list.check(address, type)) return reason;
  }
  return null;
}

/** The allow list from `config.outboundAllow`. */
export function allowList(cidrs: readonly string[]): BlockList {
  return cidrList(cidrs, 'HERALD_OUTBOUND_ALLOW');
}

/**
 * The refusal of a connection to `host` when it is a literal address that may not be reached; undefined for an
 * allowed address, and for a name (its addresses are checked as it resolves, by {@link safeLookup}).
 */
function literalRefusal(host: string, allow: BlockList): UnsafeAddressError | undefined {
  const reason = isIP(host) === 0 ? null : refusal(host, allow);
  return reason === null ? undefined : new UnsafeAddressError(`${host} is ${reason}`);
}

function bare(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

function resolveAll(hostname: string): Promise<LookupAddress[]> {
  return new Promise((resolve, reject) => {
    dnsLookup(hostname, { all: true, order: 'verbatim' }, (error, addresses) =>
      error ? reject(error) : resolve(addresses),
    );
  });
}

/**
 * The save-time check for an outbound URL: a literal address is checked directly, a name is resolved and every
 * address it resolves to is checked. A name that does not resolve now is accepted: it is checked again on
 * every connection. Throws `unsafe_url`.
 */
export async function checkUrl(url: string, allow: BlockList): Promise<void> {
  const host = bare(new URL(url).hostname);
  if (isIP(host) !== 0) {
    const reason = refusal(host, allow);
    if (reason !== null) throw new HeraldError('unsafe_url', `${host} is ${reason}`);
    return;
  }
  let addresses: LookupAddress[];
  try {
    addresses = await resolveAll(host);
  } catch {
    return;
  }
  for (const { address } of addresses) {
    const reason = refusal(address, allow);
    if (reason !== null) throw new HeraldError('unsafe_url', `${host} resolves to ${address}, ${reason}`);
  }
}

/**
 * A DNS lookup for `net.connect` that drops refused addresses; fails when none is left. The connection is made
 * to an address that was checked, so the answer cannot change between the check and the connect.
 */
export function safeLookup(allow: BlockList): LookupFunction {
  return (hostname, options, callback) => {
    resolveAll(hostname).then(
      (all) => {
        const family = typeof options.family === 'number' ? options.family : 0;
        const found = all.filter((a) => family === 0 || a.family === family);
        const usable = found.filter((a) => refusal(a.address, allow) === null);
        if (usable.length === 0) {
          const first = found[0];
          const why = first ? `${first.address}, ${refusal(first.address, allow)}` : 'no address';
          callback(new UnsafeAddressError(`${hostname} resolves to ${why}`), '', 4);
        } else if (options.all) {
          callback(null, usable);
        } else {
          callback(null, usable[0]!.address, usable[0]!.family);
        }
      },
      (error: NodeJS.ErrnoException) => callback(error, '', 4),
    );
  };
}

/**
 * A TCP connection for clients that open their own sockets (nodemailer's `getSocket`): a literal address is
 * checked, a name resolves through {@link safeLookup}, so it connects only to an allowed address.
 */
export function connectSafely(
  target: { host: string; port: number },
  allow: BlockList,
  timeoutMs: number,
  done: (error: Error | null, socket?: Socket) => void,
): void {
  const host = bare(target.host);
  const refused = literalRefusal(host, allow);
  if (refused !== undefined) {
    done(refused);
    return;
  }
  const socket = connect({ host, port: target.port, lookup: safeLookup(allow), timeout: timeoutMs });
  const fail = (error: Error) => {
    socket.destroy();
    done(error);
  };
  socket.once('error', fail);
  socket.once('timeout', () => fail(new Error(`connecting to ${host}:${target.port} timed out`)));
  socket.once('connect', () => {
    socket.removeListener('error', fail);
    socket.removeAllListeners('timeout');
    socket.setTimeout(0);
    done(null, socket);
  });
}

export interface OutboundAgentOptions {
  /** `config.outboundAllow`. */
  allow: readonly string[];
  /** Connect timeout, milliseconds. */
  connectTimeoutMs: number;
}

/**
 * The undici Agent for every outbound request: refuses connections to addresses outside the public internet
 * (literal hosts directly, names after resolution) unless allowed. Redirects are never followed (undici's
 * `request` does not follow them; callers treat a 3xx as a failure).
 */
export function createOutboundAgent(options: OutboundAgentOptions): Agent {
  const allow = allowList(options.allow);
  const connector = buildConnector({ lookup: safeLookup(allow), timeout: options.connectTimeoutMs });
  return new Agent({
    connect(connectOptions, callback) {
      const refused = literalRefusal(bare(connectOptions.hostname), allow);
      if (refused !== undefined) callback(refused, null);
      else connector(connectOptions, callback);
    },
  });
}
