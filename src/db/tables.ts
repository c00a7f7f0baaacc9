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

export interface EndpointsTable {
  id: string;
  url: string;
  description: string | null;
  types: string;
  secret: string;
  status: 'enabled' | 'disabled';
  disabled_reason: string | null;
  created_at: number;
  updated_at: number;
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'dead' | 'cancelled';

export interface DeliveriesTable {
  id: string;
  event_id: string;
  channel: 'webhook';
  endpoint_id: string | null;
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
