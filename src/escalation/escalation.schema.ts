import { Type } from 'typebox';

const Open = { additionalProperties: true } as const;
const Time = Type.String({ format: 'date-time' });
const NullableTime = Type.Union([Time, Type.Null()]);

/** An event's escalation as `GET /v1/events/{id}` shows it (see escalation.ts, `presentEscalation`). */
export const EscalationView = Type.Object({
  policy: Type.Union(
    [
      Type.Object(
        {
          id: Type.String(),
          name: Type.Union([Type.String(), Type.Null()]),
          levels: Type.Array(Type.Unknown(), {
            description: 'As `GET /v1/escalation-policies/{id}` shows them',
          }),
          repeat: Type.Integer(),
        },
        Open,
      ),
      Type.Null(),
    ],
    {
      description: 'The policy as frozen onto the event when it was routed; null for reminders or aging only',
    },
  ),
  due_at: NullableTime,
  starts_at: Type.String({ format: 'date-time', description: "When the policy's first level counts from" }),
  reminders: Type.Array(Time, { description: 'When each reminder is (or was) due' }),
  aging_ms: Type.Union([Type.Integer(), Type.Null()]),
  steps: Type.Array(
    Type.Object(
      {
        kind: Type.String({ description: '`level`, `reminder`, `overdue` or `policy_missing`' }),
        level: Type.Optional(Type.Integer()),
        round: Type.Optional(Type.Integer()),
        at: Time,
        targets: Type.Optional(Type.Unknown()),
        notified: Type.Array(Type.String(), { description: 'The users it notified' }),
        queues: Type.Optional(
          Type.Array(Type.Object({ group_id: Type.String(), item_id: Type.String() }, Open)),
        ),
      },
      { ...Open, description: 'A step taken: a level fired, a reminder or the overdue notice sent' },
    ),
  ),
  status: Type.Union([Type.Literal('active'), Type.Literal('stopped'), Type.Literal('exhausted')]),
  stopped_reason: Type.Union([Type.String(), Type.Null()]),
  stopped_at: NullableTime,
});
