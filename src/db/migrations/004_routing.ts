import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

/**
 * Routing that knows the organisation. Users gain roles; roles and attribute values are also kept one row
 * each (`user_roles`, `user_attributes`) so a directory segment ("role warehouse at site X") is an index
 * lookup rather than a scan of every user's JSON. Groups nest (`group_groups`). Rules gain `continue_matching`
 * and per-severity channels; users can follow event types, sources and subjects (`subscriptions`).
 */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  const ms = 'bigint';

  await db.schema
    .alterTable('users')
    .addColumn('roles', 'text', (c) => c.notNull().defaultTo('[]'))
    .execute();

  await db.schema
    .createTable('user_roles')
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('role', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('user_roles_pk', ['user_id', 'role'])
    .execute();
  await db.schema.createIndex('user_roles_role').on('user_roles').columns(['role', 'user_id']).execute();

  await db.schema
    .createTable('user_attributes')
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('value', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('user_attributes_pk', ['user_id', 'name', 'value'])
    .execute();
  await db.schema
    .createIndex('user_attributes_value')
    .on('user_attributes')
    .columns(['name', 'value', 'user_id'])
    .execute();
  await indexExistingAttributes(db);

  await db.schema
    .createTable('group_groups')
    .addColumn('group_id', 'text', (c) => c.notNull().references('groups.id').onDelete('cascade'))
    .addColumn('child_id', 'text', (c) => c.notNull().references('groups.id').onDelete('cascade'))
    .addPrimaryKeyConstraint('group_groups_pk', ['group_id', 'child_id'])
    .execute();
  await db.schema.createIndex('group_groups_child').on('group_groups').column('child_id').execute();

  await db.schema
    .alterTable('rules')
    .addColumn('continue_matching', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.alterTable('rules').addColumn('channels_by_severity', 'text').execute();
  // Before this migration every matching rule applied; rules saved then keep doing so.
  await (db as Kysely<{ rules: { continue_matching: number } }>)
    .updateTable('rules')
    .set({ continue_matching: 1 })
    .execute();

  await db.schema
    .createTable('subscriptions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('types', 'text')
    .addColumn('source_id', 'text')
    .addColumn('subject', 'text')
    .addColumn('channels', 'text', (c) => c.notNull())
    .addColumn('created_at', ms, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('subscriptions_user').on('subscriptions').column('user_id').execute();
  await db.schema.createIndex('subscriptions_source').on('subscriptions').column('source_id').execute();
  await db.schema.createIndex('subscriptions_subject').on('subscriptions').column('subject').execute();
}

interface Directory {
  users: { id: string; attributes: string };
  user_attributes: { user_id: string; name: string; value: string };
}

/** Fills `user_attributes` from the users already stored, a page at a time. */
async function indexExistingAttributes(untyped: Kysely<unknown>): Promise<void> {
  const db = untyped as Kysely<Directory>;
  let after = '';
  for (;;) {
    const users = await db
      .selectFrom('users')
      .select(['id', 'attributes'])
      .where('id', '>', after)
      .orderBy('id')
      .limit(1000)
      .execute();
    if (users.length === 0) return;
    const rows = users.flatMap((u) =>
      attributeRows(u.id, JSON.parse(u.attributes) as Record<string, unknown>),
    );
    for (let i = 0; i < rows.length; i += 5000) {
      await db
        .insertInto('user_attributes')
        .values(rows.slice(i, i + 5000))
        .onConflict((oc) => oc.doNothing())
        .execute();
    }
    after = users.at(-1)!.id;
  }
}

// The same rule as src/directory/traits.ts (which a migration must not import: it may change later).
function attributeRows(userId: string, attributes: Record<string, unknown>) {
  return Object.entries(attributes).flatMap(([name, value]) =>
    (Array.isArray(value) ? value : [value]).map((v) => ({ user_id: userId, name, value: String(v) })),
  );
}
