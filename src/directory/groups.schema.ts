import { Type } from 'typebox';
import { DirectoryId } from './users.schema.ts';

export const GroupParams = Type.Object({ id: DirectoryId });
export const MemberParams = Type.Object({ id: DirectoryId, userId: DirectoryId });

const MAX_MEMBERS = 10_000;
const MAX_CHILD_GROUPS = 100;

export const GroupBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    members: Type.Array(DirectoryId, {
      maxItems: MAX_MEMBERS,
      description: 'User ids; the group ends up with exactly these members',
    }),
    queue: Type.Optional(
      Type.Boolean({
        description:
          'Whether the group acts as a shared queue: an event routed to it becomes one shared item that any ' +
          'member can take (`/v1/me/queues`), instead of a notification for each member. Left out: false',
      }),
    ),
    groups: Type.Optional(
      Type.Array(DirectoryId, {
        maxItems: MAX_CHILD_GROUPS,
        description:
          "Ids of groups nested in this one: their members (and their nested groups' members) belong to " +
          'this group too. Left out: none. A nesting that would make a cycle is refused',
      }),
    ),
  },
  { additionalProperties: false },
);

export const MembersBody = Type.Object(
  { users: Type.Array(DirectoryId, { minItems: 1, maxItems: MAX_MEMBERS }) },
  { additionalProperties: false },
);

const GroupFields = {
  id: Type.String(),
  name: Type.String(),
  queue: Type.Boolean({ description: 'Whether the group acts as a shared queue' }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
};

export const Group = Type.Object({
  ...GroupFields,
  members: Type.Array(Type.String(), { description: 'Direct members' }),
  groups: Type.Array(Type.String(), { description: 'Groups nested directly in this one' }),
});
export const GroupSummary = Type.Object({ ...GroupFields, member_count: Type.Integer() });
