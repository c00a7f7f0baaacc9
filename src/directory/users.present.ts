import { iso } from '../clock.ts';
import type { UserRow } from '../db/tables.ts';
import type { AttributeValue } from './users.validate.ts';

/** The API shape of a user. */
export function presentUser(row: UserRow) {
  return {
    id: row.id,
    name: row.name,
    email: row.email,
    phone: row.phone,
    locale: row.locale,
    timezone: row.timezone,
    manager: row.manager,
    roles: JSON.parse(row.roles) as string[],
    attributes: JSON.parse(row.attributes) as Record<string, AttributeValue>,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}
