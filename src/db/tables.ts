import type { Generated, Insertable, Selectable, Updateable } from 'kysely';

/*
 * Table types. Conventions shared by both engines:
 * - times are integer milliseconds since the epoch (`bigint` columns read back as numbers);
 * - JSON is stored as text and parsed by the repositories;
 * - booleans are 0/1 integers.
 */

export interface SourcesTable {
  id: string;
  name: string;
  callback_url: string | null;
  created_at: number;
  updated_at: number;
}

/** API credentials of every kind; only a SHA-256 of the token is kept. */
export interface CredentialsTable {
  id: string;
  kind: 'admin' | 'source' | 'user';
  /** The source id for `source`, the user id for `user`, null for `admin`. */
  owner_id: string | null;
  hash: string;
  /** The first characters of the token, to tell keys apart in listings. */
  prefix: string;
  name: string | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
}

export interface UsersTable {
  id: string;
  name: string;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  manager: string | null;
  attributes: string;
  created_at: number;
  updated_at: number;
}

export interface GroupsTable {
  id: string;
  name: string;
  created_at: number;
  updated_at: number;
}

export interface GroupMembersTable {
  group_id: string;
  user_id: string;
}

export type EventStatus = 'pending' | 'routed';

export interface EventsTable {
  id: string;
  source_id: string;
  /** The event's id as the source knows it (its own, or Herald's when it sent none). */
  external_id: string;
  idempotency_key: string | null;
  /** SHA-256 of the normalised event, to tell a retry from a conflicting reuse of an id. */
  body_hash: string;
  format: 'native' | 'cloudevents';
  type: string;
  subject: string | null;
  time: number;
  severity: 'info' | 'warning' | 'error' | 'critical';
  title: string | null;
  summary: string | null;
  url: string | null;
  due_at: number | null;
  recipients: string | null;
  actions: string | null;
  dedup_key: string | null;
  data: string | null;
  /** CloudEvents attributes Herald has no field for (source URI, extensions, datacontenttype). */
  extensions: string | null;
  status: EventStatus;
  received_at: number;
  routed_at: number | null;
  locked_until: number;
}

export type NotificationState = 'unread' | 'read' | 'archived';

export interface NotificationsTable {
  id: string;
  event_id: string;
  user_id: string;
  source_id: string;
  type: string;
  severity: string;
  title: string;
  summary: string | null;
  url: string | null;
  channels: string;
  state: NotificationState;
  /** Position in the user's change stream (SSE id); grows on every change. */
  seq: number;
  /** The `seq` the notification was created with. */
  created_seq: number;
  created_at: number;
  updated_at: number;
  read_at: number | null;
  archived_at: number | null;
}

export type EndpointKind = 'webhook' | 'slack' | 'teams';

/** Failure bookkeeping shared by endpoints and providers (the circuit breaker's state). */
export interface CircuitColumns {
  /** Consecutive failed attempts; reset by a success. */
  failures: number;
  /** When the current run of failures began. */
  failing_since: number | null;
  /** While in the future, nothing is sent; once past, one probe is. */
  paused_until: number | null;
}

export interface EndpointsTable extends CircuitColumns {
  id: string;
  kind: EndpointKind;
  url: string;
  description: string | null;
  types: string;
  secret: string;
  status: 'enabled' | 'disabled';
  disabled_reason: string | null;
  /** JSONata expression over the webhook payload; the endpoint gets the event when it is truthy. */
  filter: string | null;
  /** JSONata expression producing the body sent instead of the webhook payload. */
  transform: string | null;
  /** Extra request headers (JSON object). */
  headers: string | null;
  payload: 'full' | 'thin';
  /** Most requests per second; null for no limit. */
  rate_limit: number | null;
  /** 1: one delivery at a time, oldest first, and a failing one holds back the rest. */
  ordered: number;
  created_at: number;
  updated_at: number;
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'dead' | 'cancelled';

export interface DeliveriesTable {
  id: string;
  event_id: string;
  /** `webhook`, `slack`, `teams` (to an endpoint) or `email`, `push`, `sms` (to a user). */
  channel: string;
  endpoint_id: string | null;
  /** What concurrency and circuit breaking are counted by: the endpoint id, or the channel for per-user ones. */
  lane: string;
  notification_id: string | null;
  user_id: string | null;
  /** The channels to try next (JSON array) when this one has no address or fails for good. */
  fallback: string | null;
  /** The provider of the last attempt. */
  provider_id: string | null;
  /** `webhook-id`: the same on every attempt of this delivery. */
  msg_id: string;
  status: DeliveryStatus;
  attempt_count: number;
  next_attempt_at: number;
  locked_until: number;
  last_status_code: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  completed_at: number | null;
}

export interface AttemptsTable {
  id: string;
  delivery_id: string;
  attempted_at: number;
  trigger: 'scheduled' | 'manual';
  outcome: 'succeeded' | 'retry' | 'failed';
  status_code: number | null;
  latency_ms: number;
  response: string | null;
  error: string | null;
  provider_id: string | null;
}

export interface ProvidersTable extends CircuitColumns {
  id: string;
  channel: 'email' | 'sms' | 'push';
  kind: string;
  name: string | null;
  /** JSON, secrets included: never returned by the API as stored (see the provider kind's `redact`). */
  config: string;
  /** Lower first. */
  priority: number;
  enabled: number;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

/** A push address of a user: a web push subscription, an FCM registration token or an APNs device token. */
export interface DevicesTable {
  id: string;
  user_id: string;
  kind: 'webpush' | 'fcm' | 'apns';
  /** The subscription endpoint or the device token. */
  address: string;
  /** Web push subscription keys (JSON `{p256dh, auth}`). */
  keys: string | null;
  name: string | null;
  created_at: number;
  updated_at: number;
}

/** A user's choice for a category (event type pattern) on a channel. */
export interface PreferencesTable {
  user_id: string;
  category: string;
  channel: string;
  enabled: number;
  updated_at: number;
}

export interface TemplatesTable {
  id: string;
  /** Event type patterns (JSON array). */
  types: string;
  /** A channel, or `*` for every channel. */
  channel: string;
  /** BCP 47 tag, or '' for the default. */
  locale: string;
  subject: string | null;
  text: string;
  html: string | null;
  created_at: number;
  updated_at: number;
}

export interface SettingsTable {
  name: string;
  value: string;
}

export interface RulesTable {
  id: string;
  name: string | null;
  position: number;
  enabled: number;
  match: string;
  recipients: string;
  channels: string;
  created_at: number;
  updated_at: number;
}

export interface AuditTable {
  id: Generated<number>;
  at: number;
  actor: string;
  action: string;
  subject_type: string;
  subject_id: string;
  data: string | null;
}

export interface CountersTable {
  name: string;
  value: number;
}

export interface Database {
  sources: SourcesTable;
  credentials: CredentialsTable;
  users: UsersTable;
  groups: GroupsTable;
  group_members: GroupMembersTable;
  events: EventsTable;
  notifications: NotificationsTable;
  endpoints: EndpointsTable;
  deliveries: DeliveriesTable;
  attempts: AttemptsTable;
  rules: RulesTable;
  audit_log: AuditTable;
  counters: CountersTable;
  providers: ProvidersTable;
  devices: DevicesTable;
  preferences: PreferencesTable;
  templates: TemplatesTable;
  settings: SettingsTable;
}

export type EventRow = Selectable<EventsTable>;
export type NewEvent = Insertable<EventsTable>;
export type NotificationRow = Selectable<NotificationsTable>;
export type DeliveryRow = Selectable<DeliveriesTable>;
export type DeliveryUpdate = Updateable<DeliveriesTable>;
export type EndpointRow = Selectable<EndpointsTable>;
export type UserRow = Selectable<UsersTable>;
export type RuleRow = Selectable<RulesTable>;
export type SourceRow = Selectable<SourcesTable>;
export type ProviderRow = Selectable<ProvidersTable>;
export type DeviceRow = Selectable<DevicesTable>;
export type TemplateRow = Selectable<TemplatesTable>;
