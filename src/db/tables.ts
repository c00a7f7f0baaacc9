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
  /** `whsec_` secret that write-backs to this source are signed with (Standard Webhooks). */
  callback_secret: string | null;
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
  /** JSON array of role names; also one row each in `user_roles`. */
  roles: string;
  created_at: number;
  updated_at: number;
}

export interface GroupsTable {
  id: string;
  name: string;
  /** 1 when the group is a shared queue: routing gives it one shared item per event, not one per member. */
  queue: Generated<number>;
  created_at: number;
  updated_at: number;
}

export interface GroupMembersTable {
  group_id: string;
  user_id: string;
}

/** A group nested in another: the members of `child_id` are members of `group_id` too. */
export interface GroupGroupsTable {
  group_id: string;
  child_id: string;
}

/** One role of a user (the index behind directory segments). */
export interface UserRolesTable {
  user_id: string;
  role: string;
}

/** One attribute value of a user, as text; a list attribute has a row per item (the index behind segments). */
export interface UserAttributesTable {
  user_id: string;
  name: string;
  value: string;
}

/** A user following event types, a source or a subject (all given conditions hold). */
export interface SubscriptionsTable {
  id: string;
  user_id: string;
  /** Event type patterns (JSON array), or null for any type. */
  types: string | null;
  source_id: string | null;
  subject: string | null;
  /** Channels besides the inbox (JSON array). */
  channels: string;
  created_at: number;
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
  /** JSON escalation options the event carried (`escalation_policy`, `reminders`, `aging`). */
  escalation: string | null;
  data: string | null;
  /** CloudEvents attributes Herald has no field for (source URI, extensions, datacontenttype). */
  extensions: string | null;
  status: EventStatus;
  received_at: number;
  routed_at: number | null;
  locked_until: number;
  /** `first` (null), `all`, or JSON `{"quorum": n}`: how many responses close the event. */
  response_policy: string | null;
  /** Where responses are written back to, instead of the source's callback URL. */
  callback_url: string | null;
  /** How the event was closed: `responded`, `acknowledged`, `resolved` or `cancelled`; null while open. */
  resolution: string | null;
  resolved_at: number | null;
  /** Who closed it: `user:<id>` or `source:<id>`. */
  resolved_by: string | null;
}

/** `resolved`: someone responded to it (or the source closed its event); set by Herald, never by the user. */
export type NotificationState = 'unread' | 'read' | 'archived' | 'resolved';

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
  /** The event's `dedup_key`: a later event with the same key (and source) updates this notification. */
  dedup_key: string | null;
  /** How many events this notification stands for (deduplicated repeats). */
  occurrences: Generated<number>;
  /** The latest event folded into it by deduplication. */
  last_event_id: string | null;
  /** JSON: the latest event data (deduplicated), or the members of a group, digest or throttle summary. */
  data: string | null;
  /** JSON `{action, comment, by, at}`: this recipient's response, or the one that closed the event. */
  response: string | null;
  resolved_at: number | null;
  /** The name of who handled it ("handled by ..."), or the source that closed the event. */
  resolved_by: string | null;
  /**
   * 1 (the default) when it offers its event's actions; 0 when it reached its user only through their own
   * subscription (the actions belong to the people the event was addressed or routed to), or when it sums up
   * several events (a group, digest or throttle summary).
   */
  actionable: Generated<number>;
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
  /** When the provider reported the message handed to the device (an SMS delivery receipt); null until then. */
  delivered_at: number | null;
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
  /** The provider's id for the message it accepted (Twilio's `SM…` sid), which its status callbacks name. */
  provider_ref: string | null;
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
  /** 1: a match does not stop the rules after this one. */
  continue_matching: number;
  /** JSON object: severity → channel specs, replacing `channels` for events of that severity. */
  channels_by_severity: string | null;
  /** Noise options (JSON: group, throttle, digest); see src/noise/options.ts. */
  noise: string | null;
  /** Actions and response policy for events that declare none (JSON `{actions, response_policy?}`). */
  actions: string | null;
  /** Escalation options (JSON: escalation_policy, reminders, aging); see src/escalation/options.ts. */
  escalation: string | null;
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

export type AnnouncementStatus = 'scheduled' | 'publishing' | 'published' | 'expired' | 'cancelled';

/** A message to a segment of the directory, materialised as one notification per member. */
export interface AnnouncementsTable {
  id: string;
  /** The `herald.announcement` event its notifications belong to. */
  event_id: string;
  status: AnnouncementStatus;
  /** The segment (JSON), as accepted by the API. */
  audience: string;
  title: string;
  body: string;
  url: string | null;
  severity: 'info' | 'warning' | 'error' | 'critical';
  publish_at: number;
  expires_at: number | null;
  /** Audience size: estimated when created, counted again when publishing starts. */
  total: number;
  /** Notifications created so far. */
  delivered: number;
  /** Notifications taken out of inboxes after the announcement was cancelled or expired. */
  removed: number;
  /** The last user id the fan-out (or, once cancelled or expired, the withdrawal) has handled. */
  cursor: string | null;
  /** When the publisher next has work on it; null once nothing is left to do. */
  due_at: number | null;
  locked_until: number;
  created_at: number;
  updated_at: number;
  published_at: number | null;
  /** When it was cancelled or expired. */
  ended_at: number | null;
}

/** A durable one-shot timer: fired exactly once, at or after `due_at`, by the node holding its lease. */
export interface TimersTable {
  id: string;
  /** Which handler fires it, e.g. `noise.flush`. */
  kind: string;
  due_at: number;
  /** JSON handed to the handler. */
  payload: string;
  locked_until: Generated<number>;
  /** Failed firings so far (each pushes `due_at` back). */
  attempts: Generated<number>;
  last_error: string | null;
  created_at: number;
}

/** A maintenance window: matching events notify nobody between `starts_at` and `ends_at`. */
export interface SilencesTable {
  id: string;
  /** JSON `{types?, sources?, severities?, subject?}`. */
  matchers: string;
  starts_at: number;
  ends_at: number;
  comment: string;
  created_by: string;
  created_at: number;
  updated_at: number;
}

/** While a parent event is open, child events with the same values at `equal` notify nobody. */
export interface InhibitionsTable {
  id: string;
  name: string | null;
  /** JSON matcher `{types, sources?}` for parent events. */
  parent: string;
  /** JSON matcher `{types, sources?, severities?}` for child events. */
  children: string;
  /** JSON array of paths (`data.system`) whose values parent and child share. */
  equal: string;
  /** How long a parent stays open without a resolve, in ms. */
  expires_in: number;
  created_at: number;
  updated_at: number;
}

/** A parent event of an inhibition, open until `expires_at` or until resolved. */
export interface InhibitionParentsTable {
  inhibition_id: string;
  event_id: string;
  event_type: string;
  /** The values at the inhibition's `equal` paths (JSON array). */
  key: string;
  opened_at: number;
  expires_at: number;
  resolved_at: number | null;
  resolved_by: string | null;
}

/** An event held back entirely: by a silence (`by_id` the silence) or an inhibition (the parent event). */
export interface NoiseSuppressedTable {
  event_id: string;
  kind: 'silence' | 'inhibition';
  by_id: string;
  /** How many recipients it would have reached. */
  recipients: number;
  at: number;
}

export type NoiseBucketKind = 'group' | 'throttle' | 'digest';

/** A group, throttle window or digest collecting held notifications until its timer flushes them. */
export interface NoiseBucketsTable {
  id: string;
  kind: NoiseBucketKind;
  /** Set while open (one open bucket per group key, rule and user, or user and cadence); null once closed. */
  open_key: string | null;
  rule_id: string | null;
  user_id: string | null;
  /** What the members share, for titles (`ERP→CRM`). */
  label: string | null;
  /** Events attached (group, digest) or notifications counted in the window (throttle). */
  count: number;
  opened_at: number;
  /** When its timer flushes it next. */
  due_at: number;
  flushes: Generated<number>;
  closed_at: number | null;
}

/** One event held for one recipient in a bucket; released into the bucket's summary notification. */
export interface NoiseHeldTable {
  bucket_id: string;
  event_id: string;
  user_id: string;
  rule_id: string | null;
  /** The channel chains it would have had (JSON array of `push>email` keys). */
  chains: string;
  at: number;
  released_at: number | null;
  notification_id: string | null;
}

/** A user's quiet hours and digest preference (JSON each). */
export interface NoiseSettingsTable {
  user_id: string;
  quiet_hours: string | null;
  digest: string | null;
  updated_at: number;
}

/** A named escalation policy: levels of targets and channels, each due some time after the previous one. */
export interface EscalationPoliciesTable {
  id: string;
  name: string | null;
  /** JSON array of levels `{after, targets, channels}` (after in ms). */
  levels: string;
  /** How many times the levels run again after the last one. */
  repeat: number;
  created_at: number;
  updated_at: number;
}

export type EscalationStatus = 'active' | 'stopped' | 'exhausted';

/** One event's escalation and deadline timers: the frozen policy, its options and the steps taken. */
export interface EscalationsTable {
  event_id: string;
  policy_id: string | null;
  /** JSON copy of the policy as it was when the event was routed; null when only reminders/aging apply. */
  policy: string | null;
  /** JSON `{reminders, aging, due_at}` as resolved at routing. */
  options: string;
  status: EscalationStatus;
  /** JSON array of steps `{kind, level?, round?, at, targets, notified}`. */
  steps: string;
  stopped_reason: string | null;
  stopped_at: number | null;
  created_at: number;
  updated_at: number;
}

/** A recipient's response to an actionable notification; written back to the source by `delivery_id`. */
export interface ResponsesTable {
  id: string;
  event_id: string;
  notification_id: string;
  user_id: string;
  action: string;
  comment: string | null;
  /** JSON `{id, name, email}` of the responder as they were when responding. */
  responder: string;
  /** `api`, `link` (email or push) or `slack`. */
  via: string;
  at: number;
  /** The write-back delivery; null when neither the event nor its source has a callback URL. */
  delivery_id: string | null;
}

export type QueueItemState = 'open' | 'taken' | 'done';

/** One event's shared item in a queue group; any member can take it, and everyone sees who did. */
export interface QueueItemsTable {
  id: string;
  event_id: string;
  group_id: string;
  title: string;
  summary: string | null;
  url: string | null;
  severity: EventsTable['severity'];
  type: string;
  state: QueueItemState;
  taken_by: string | null;
  taken_at: number | null;
  created_at: number;
  updated_at: number;
}

export interface Database {
  sources: SourcesTable;
  credentials: CredentialsTable;
  users: UsersTable;
  groups: GroupsTable;
  group_members: GroupMembersTable;
  group_groups: GroupGroupsTable;
  user_roles: UserRolesTable;
  user_attributes: UserAttributesTable;
  subscriptions: SubscriptionsTable;
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
  announcements: AnnouncementsTable;
  timers: TimersTable;
  silences: SilencesTable;
  inhibitions: InhibitionsTable;
  inhibition_parents: InhibitionParentsTable;
  noise_suppressed: NoiseSuppressedTable;
  noise_buckets: NoiseBucketsTable;
  noise_held: NoiseHeldTable;
  noise_settings: NoiseSettingsTable;
  responses: ResponsesTable;
  escalation_policies: EscalationPoliciesTable;
  escalations: EscalationsTable;
  queue_items: QueueItemsTable;
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
export type SubscriptionRow = Selectable<SubscriptionsTable>;
export type AnnouncementRow = Selectable<AnnouncementsTable>;
export type ResponseRow = Selectable<ResponsesTable>;
