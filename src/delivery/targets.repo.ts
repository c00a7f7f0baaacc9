import type { Db } from '../db/engine.ts';
import type { DeliveryRow, DeviceRow } from '../db/tables.ts';

/**
 * What the deliveries of a claimed batch need to be rendered and addressed, read in a few queries for the whole
 * batch: their notifications and recipients, the recipients' push devices, the enabled providers in failover
 * order, and the templates.
 */
export async function loadUserTargets(db: Db, claimed: readonly DeliveryRow[]) {
  const forUsers = claimed.filter((d) => d.user_id !== null);
  const notificationIds = [...new Set(forUsers.map((d) => d.notification_id!))];
  const userIds = [...new Set(forUsers.map((d) => d.user_id!))];
  const wantsDevices = [...new Set(forUsers.filter((d) => d.channel === 'push').map((d) => d.user_id!))];
  const [notifications, users, devices, providers, templates] = await Promise.all([
    notificationIds.length === 0
      ? []
      : db
          .selectFrom('notifications')
          .select(['id', 'title', 'summary', 'url'])
          .where('id', 'in', notificationIds)
          .execute(),
    userIds.length === 0 ? [] : db.selectFrom('users').selectAll().where('id', 'in', userIds).execute(),
    wantsDevices.length === 0
      ? []
      : db.selectFrom('devices').selectAll().where('user_id', 'in', wantsDevices).orderBy('id').execute(),
    forUsers.length === 0
      ? []
      : db
          .selectFrom('providers')
          .selectAll()
          .where('enabled', '=', 1)
          .orderBy('priority')
          .orderBy('id')
          .execute(),
    // Plain webhooks are never rendered: only read templates when something in the batch is.
    claimed.some((d) => d.channel !== 'webhook')
      ? db.selectFrom('templates').selectAll().orderBy('id').execute()
      : [],
  ]);
  const devicesOf = new Map<string, DeviceRow[]>();
  for (const device of devices) {
    const list = devicesOf.get(device.user_id);
    if (list === undefined) devicesOf.set(device.user_id, [device]);
    else list.push(device);
  }
  return {
    notifications: new Map(notifications.map((n) => [n.id, n])),
    users: new Map(users.map((u) => [u.id, u])),
    devices: devicesOf,
    providers,
    templates,
  };
}
