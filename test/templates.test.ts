import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import { createSource, createUser } from './factories.ts';
import { ENGINES, startHerald, type TestHerald, walk } from './helpers.ts';
import { startSmtpPeer } from './peers/smtp.ts';

/** A valid template body; `overrides` replace top-level fields. */
function templateBody(overrides: Record<string, unknown> = {}) {
  return {
    types: ['po.*'],
    channel: 'email',
    text: 'Purchase order {{ event.data.number }} needs your approval',
    ...overrides,
  };
}

async function putTemplate(h: TestHerald, id: string, overrides: Record<string, unknown> = {}) {
  const res = await h.api('PUT', `/v1/templates/${id}`, templateBody(overrides));
  assert.ok(res.status === 200 || res.status === 201, res.text);
  return res.body;
}

async function preview(h: TestHerald, body: Record<string, unknown>) {
  const res = await h.api('POST', '/v1/templates/preview', { event: { type: 'po.created' }, ...body });
  assert.equal(res.status, 200, res.text);
  return res.body;
}

for (const engine of ENGINES) {
  test(`[${engine}] creates a template with defaults, replaces it keeping created_at, and audits both`, async (t) => {
    const clock = new ManualClock();
    const h = await startHerald(t, engine, { workers: false, clock });
    const created = await h.api('PUT', '/v1/templates/po-email', templateBody());
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.body, {
      id: 'po-email',
      types: ['po.*'],
      channel: 'email',
      locale: '',
      subject: null,
      text: 'Purchase order {{ event.data.number }} needs your approval',
      html: null,
      created_at: '2026-01-01T00:00:00.000Z',
      updated_at: '2026-01-01T00:00:00.000Z',
    });

    clock.advance(1000);
    const full = {
      types: ['po.created', 'po.approval_requested'],
      channel: '*',
      locale: 'de-ch',
      subject: 'Bestellung {{ event.data.number }}',
      text: 'Bitte freigeben',
      html: '<p>Bitte <b>freigeben</b></p>',
    };
    const replaced = await h.api('PUT', '/v1/templates/po-email', full);
    assert.equal(replaced.status, 200, replaced.text);
    assert.deepEqual(replaced.body, {
      id: 'po-email',
      ...full,
      locale: 'de-CH',
      created_at: '2026-01-01T00:00:00.000Z',
      updated_at: '2026-01-01T00:00:01.000Z',
    });
    assert.deepEqual((await h.api('GET', '/v1/templates/po-email')).body, replaced.body);

    assert.equal((await h.api('DELETE', '/v1/templates/po-email')).status, 204);
    for (const method of ['GET', 'DELETE']) {
      const res = await h.api(method, '/v1/templates/po-email');
      assert.equal(res.status, 404);
      assert.equal(res.body.code, 'not_found');
    }
    const audit = await h.store.db
      .selectFrom('audit_log')
      .select(['action', 'subject_id'])
      .where('subject_type', '=', 'template')
      .orderBy('id')
      .execute();
    assert.deepEqual(
      audit.map((a) => ({ ...a })),
      [
        { action: 'template.created', subject_id: 'po-email' },
        { action: 'template.updated', subject_id: 'po-email' },
        { action: 'template.deleted', subject_id: 'po-email' },
      ],
    );
  });

  test(`[${engine}] refuses a template that does not parse, naming the part, line and column`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const res = await h.api(
      'PUT',
      '/v1/templates/broken',
      templateBody({
        subject: 'Order {{ event.data.number }}',
        text: 'Hello\n{% if event.data.number %}no end',
        html: '<p>{{ event.title | shout }}</p>',
      }),
    );
    assert.equal(res.status, 400, res.text);
    assert.equal(res.body.code, 'invalid_template');
    assert.deepEqual(
      res.body.errors.map((e: { field: string }) => e.field),
      ['body.text', 'body.html'],
    );
    assert.match(res.body.errors[0].message, /not closed, line:2, col:1/);
    assert.match(res.body.errors[1].message, /undefined filter: shout, line:1, col:4/);
    assert.equal((await h.api('GET', '/v1/templates/broken')).status, 404);

    // No partials exist: a template can never read a file (LiquidJS would look in the working directory).
    for (const tag of ['{% include "package.json" %}', '{% render "package.json" %}', '{% layout "x" %}']) {
      const included = await h.api('PUT', '/v1/templates/files', templateBody({ text: tag }));
      assert.equal(included.status, 400, `${tag}: ${included.text}`);
      assert.equal(included.body.code, 'invalid_template');
      assert.match(included.body.errors[0].message, /cannot include other files/);
    }
  });

  test(`[${engine}] rejects invalid fields with 400 naming the field`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const cases: [Record<string, unknown>, string][] = [
      [{ types: [] }, 'body.types'],
      [{ types: ['po created'] }, 'body.types.0'],
      [{ channel: 'pager' }, 'body.channel'],
      [{ channel: undefined }, 'body.channel'],
      [{ text: undefined }, 'body.text'],
      [{ text: 5 }, 'body.text'],
      [{ locale: 'not a locale' }, 'body.locale'],
      [{ locale: null }, 'body.locale'],
      [{ colour: 'red' }, 'body.colour'],
    ];
    for (const [overrides, field] of cases) {
      const res = await h.api('PUT', '/v1/templates/t1', templateBody(overrides));
      assert.equal(res.status, 400, `${JSON.stringify(overrides)}: ${res.text}`);
      assert.equal(res.body.code, 'validation_failed');
      assert.ok(
        res.body.errors?.some((e: { field: string }) => e.field === field),
        `${JSON.stringify(overrides)} → ${JSON.stringify(res.body.errors)}`,
      );
    }
    assert.equal((await h.api('PUT', '/v1/templates/bad%20id', templateBody())).status, 400);
    assert.equal((await h.api('GET', '/v1/templates')).body.items.length, 0);
  });

  test(`[${engine}] lists templates by id page by page, and by channel`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await putTemplate(h, 'c', { channel: 'sms' });
    await putTemplate(h, 'a', { channel: 'email' });
    await putTemplate(h, 'e', { channel: '*' });
    await putTemplate(h, 'b', { channel: 'email', locale: 'de' });
    await putTemplate(h, 'd', { channel: 'slack' });
    const { items, pages } = await walk(h, '/v1/templates', 2);
    assert.equal(pages, 3);
    assert.deepEqual(
      items.map((r) => r.id),
      ['a', 'b', 'c', 'd', 'e'],
    );
    const email = await h.api('GET', '/v1/templates?channel=email');
    assert.deepEqual(
      email.body.items.map((r: { id: string }) => r.id),
      ['a', 'b'],
    );
    const all = await h.api('GET', `/v1/templates?channel=${encodeURIComponent('*')}`);
    assert.deepEqual(
      all.body.items.map((r: { id: string }) => r.id),
      ['e'],
    );
    assert.equal((await h.api('GET', '/v1/templates?channel=pager')).status, 400);
  });

  test(`[${engine}] picks the recipient's locale, then its language, then the default; the channel beats *`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await putTemplate(h, 'a-de-ch-any', { channel: '*', locale: 'de-CH' });
    await putTemplate(h, 'b-de-ch-email', { channel: 'email', locale: 'de-CH' });
    await putTemplate(h, 'c-de-email', { channel: 'email', locale: 'de' });
    await putTemplate(h, 'd-default-email', { channel: 'email' });
    await putTemplate(h, 'e-default-any', { channel: '*' });
    // Same types, channel and locale as d-default-email: allowed, and the smaller id wins.
    await putTemplate(h, 'f-default-email', { channel: 'email' });
    await putTemplate(h, 'g-invoices', { types: ['invoice.*'], channel: 'email', locale: 'de-CH' });
    await createUser(h, { id: 'zurich', locale: 'de-CH' });
    await createUser(h, { id: 'vienna', locale: 'de-AT' });
    await createUser(h, { id: 'paris', locale: 'fr' });
    await createUser(h, { id: 'nowhere' });

    const chosen = async (user_id: string, channel: string) =>
      (await preview(h, { user_id, channel })).template_id as string | null;
    assert.equal(await chosen('zurich', 'email'), 'b-de-ch-email');
    assert.equal(await chosen('zurich', 'sms'), 'a-de-ch-any');
    assert.equal(await chosen('vienna', 'email'), 'c-de-email');
    assert.equal(await chosen('vienna', 'sms'), 'e-default-any');
    assert.equal(await chosen('paris', 'email'), 'd-default-email');
    assert.equal(await chosen('paris', 'push'), 'e-default-any');
    assert.equal(await chosen('nowhere', 'email'), 'd-default-email');

    // `locale` stands in for the user's; an event type no template covers renders plainly.
    const asVienna = await preview(h, { user_id: 'zurich', channel: 'email', locale: 'de-at' });
    assert.equal(asVienna.template_id, 'c-de-email');
    assert.equal(asVienna.locale, 'de-AT');
    const uncovered = await preview(h, {
      user_id: 'zurich',
      event: { type: 'case.opened', title: 'Case 7', summary: 'A case was opened' },
    });
    assert.equal(uncovered.template_id, null);
    assert.equal(uncovered.subject, 'Case 7');
    assert.equal(uncovered.text, 'A case was opened');
  });

  test(`[${engine}] localdate renders in the recipient's time zone and locale`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createUser(h, { id: 'anna', name: 'Anna', locale: 'de-CH', timezone: 'Europe/Zurich' });
    await putTemplate(h, 'due', {
      subject: 'Fällig {{ event.due_at | localdate: "date" }}',
      text: 'Hallo {{ recipient.name }}, fällig am {{ event.due_at | localdate }}',
    });
    const winter = await preview(h, {
      user_id: 'anna',
      event: { type: 'po.created', due_at: '2026-03-10T15:30:00Z' },
    });
    assert.equal(winter.template_error, null);
    assert.match(winter.text, /^Hallo Anna, fällig am 10\.03\.2026, 16:30$/);
    const summer = await preview(h, {
      user_id: 'anna',
      event: { type: 'po.created', due_at: '2026-07-10T23:30:00Z' },
    });
    assert.match(summer.text, /01:30/);
    assert.equal(summer.subject, 'Fällig 11.07.2026');
  });

  test(`[${engine}] a template that fails at render time falls back to the plain rendering`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    // Parses (the filter exists) but throws on data that is not base64.
    await putTemplate(h, 'token', {
      subject: 'Code {{ event.data.token | base64_decode }}',
      text: 'Your code: {{ event.data.token | base64_decode }}',
    });
    const event = {
      type: 'po.created',
      title: 'New order',
      summary: 'Order 42 was created',
      url: 'https://erp.example/po/42',
    };
    const good = await preview(h, {
      event: { ...event, data: { token: Buffer.from('1234').toString('base64') } },
    });
    assert.equal(good.template_error, null);
    assert.equal(good.text, 'Your code: 1234');
    assert.equal(good.subject, 'Code 1234');

    const bad = await preview(h, { event: { ...event, data: { token: '!!' } } });
    assert.equal(bad.template_id, 'token');
    assert.match(bad.template_error, /base64/);
    assert.equal(bad.subject, 'New order');
    assert.equal(bad.text, 'Order 42 was created\n\nhttps://erp.example/po/42');
    assert.match(bad.html, /<h2>New order<\/h2>/);

    // A render that would take unbounded memory is stopped, not run.
    const huge = await preview(h, { template: { text: '{% for i in (1..100000000) %}x{% endfor %}' } });
    assert.match(huge.template_error, /limit exceeded/);
    assert.equal(huge.text, '');
  });

  test(`[${engine}] HTML escapes every output; text and subject keep it as written`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await putTemplate(h, 'xss', {
      subject: '{{ event.data.note }}',
      text: 'Note: {{ event.data.note }}',
      html: '<p>Note: {{ event.data.note }}</p>',
    });
    const res = await preview(h, {
      event: { type: 'po.created', data: { note: '<script>alert("x")</script>' } },
    });
    assert.equal(res.html, '<p>Note: &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</p>');
    assert.equal(res.text, 'Note: <script>alert("x")</script>');
    assert.equal(res.subject, '<script>alert("x")</script>');
  });

  test(`[${engine}] previews an inline or stored template with the whole scope, storing nothing`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createUser(h, { id: 'bob', name: 'Bob', email: 'bob@example.com', attributes: { role: 'buyer' } });
    const stored = await putTemplate(h, 'sms-only', { channel: 'sms', text: 'SMS {{ channel }}' });
    const scope = [
      '{{ event.type }}|{{ event.source }}|{{ event.severity }}|{{ event.subject }}',
      '{{ notification.title }}|{{ notification.url }}',
      '{{ recipient.id }}|{{ recipient.name }}|{{ recipient.email }}|{{ recipient.attributes.role }}',
      '{{ channel }}|{{ event.actions[0].label }}|{{ event.data.amount | times: 2 }}',
    ].join('\n');
    const inline = await preview(h, {
      template: { text: scope, subject: 'Hi {{ recipient.name }}', html: null },
      user_id: 'bob',
      event: {
        type: 'po.approval_requested',
        source: 'erp',
        subject: 'po-42',
        severity: 'warning',
        title: 'Approve PO 42',
        url: 'https://erp.example/po/42',
        actions: [{ id: 'approve', label: 'Approve' }],
        data: { amount: 21 },
      },
    });
    assert.deepEqual(inline, {
      template_id: null,
      channel: 'email',
      locale: null,
      subject: 'Hi Bob',
      text: [
        'po.approval_requested|erp|warning|po-42',
        'Approve PO 42|https://erp.example/po/42',
        'bob|Bob|bob@example.com|buyer',
        'email|Approve|42',
      ].join('\n'),
      // No HTML part: the email provider makes one from the text.
      html: null,
      template_error: null,
    });

    // A stored template previews on its own channel; without a user, a placeholder recipient stands in.
    const byId = await preview(h, { template_id: stored.id, template: undefined });
    assert.equal(byId.template_id, 'sms-only');
    assert.equal(byId.channel, 'sms');
    assert.equal(byId.text, 'SMS sms');
    assert.equal(byId.html, null);
    const placeholder = await preview(h, { template: { text: '{{ recipient.name }}' } });
    assert.equal(placeholder.text, 'Preview Recipient');

    // Chat messages go to a channel: no recipient.
    const slack = await preview(h, { channel: 'slack', template: { text: '[{{ recipient.name }}]' } });
    assert.equal(slack.text, '[]');

    const templates = await h.store.db.selectFrom('templates').select('id').execute();
    assert.deepEqual(
      templates.map((r) => r.id),
      ['sms-only'],
    );
    assert.equal((await h.store.db.selectFrom('events').select('id').execute()).length, 0);
  });

  test(`[${engine}] preview refuses what it cannot render`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createUser(h, { id: 'bob' });
    await putTemplate(h, 'stored');
    const cases: [Record<string, unknown>, string, string][] = [
      [{ template: { text: '{{ x | nope }}' } }, 'invalid_template', 'body.template.text'],
      [{ template: { text: 'x', subject: '{% if %}' } }, 'invalid_template', 'body.template.subject'],
      [{ user_id: 'ghost' }, 'unknown_reference', ''],
      [{ template_id: 'ghost' }, 'unknown_reference', ''],
      [{ template: { text: 'x' }, template_id: 'stored' }, 'validation_failed', 'body.template_id'],
      [{ channel: 'teams', user_id: 'bob' }, 'validation_failed', 'body.user_id'],
      [{ channel: '*' }, 'validation_failed', 'body.channel'],
      [{ locale: 'x y' }, 'validation_failed', 'body.locale'],
      [{ event: { type: 'po.created', due_at: 'tomorrow' } }, 'validation_failed', 'body.event.due_at'],
      [{ event: { title: 'no type' } }, 'validation_failed', 'body.event.type'],
    ];
    for (const [body, code, field] of cases) {
      const res = await h.api('POST', '/v1/templates/preview', { event: { type: 'po.created' }, ...body });
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.body.code, code, JSON.stringify(body));
      if (field !== '') {
        assert.ok(
          res.body.errors?.some((e: { field: string }) => e.field === field),
          `${JSON.stringify(body)} → ${JSON.stringify(res.body.errors)}`,
        );
      } else {
        assert.match(res.body.detail, /ghost/);
      }
    }
  });

  test(`[${engine}] templates need the admin token`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    assert.equal((await h.api('GET', '/v1/templates', undefined, null)).status, 401);
    assert.equal((await h.api('PUT', '/v1/templates/t', templateBody(), source.api_key)).status, 403);
    const previewed = await h.api('POST', '/v1/templates/preview', { event: { type: 'x' } }, source.api_key);
    assert.equal(previewed.status, 403);
  });

  test(`[${engine}] delivery sends what the preview shows: the saved template in the recipient's locale`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    const smtp = await startSmtpPeer(t);
    const provider = await h.api('PUT', '/v1/providers/mail', {
      kind: 'smtp',
      config: { url: smtp.url, from: 'herald@example.com' },
    });
    assert.equal(provider.status, 201, provider.text);
    await createUser(h, {
      id: 'anna',
      email: 'anna@example.com',
      locale: 'de-CH',
      timezone: 'Europe/Zurich',
    });
    const rule = await h.api('PUT', '/v1/rules/po', {
      match: { types: ['po.*'] },
      recipients: { users: ['anna'] },
      channels: ['email'],
    });
    assert.equal(rule.status, 201, rule.text);
    await putTemplate(h, 'po-default', { channel: '*', subject: 'Order {{ event.data.number }}', text: 'x' });
    await putTemplate(h, 'po-de', {
      locale: 'de',
      subject: 'Bestellung {{ event.data.number }}',
      text: 'Fällig am {{ event.due_at | localdate }}: {{ event.data.note }}',
      html: '<p>Fällig am {{ event.due_at | localdate }}: {{ event.data.note }}</p>',
    });
    const event = {
      type: 'po.approval_requested',
      title: 'PO 4711',
      due_at: '2026-03-10T15:30:00Z',
      data: { number: 4711, note: '<b>dringend</b>' },
    };
    const published = await h.api('POST', '/v1/events', event, source.api_key);
    assert.equal(published.status, 202, published.text);
    while ((await h.workers.router.runOnce()) > 0);
    while ((await h.workers.dispatcher.runOnce()) > 0);

    const [mail] = await smtp.waitForMessages(1);
    assert.equal(mail!.parsed.subject, 'Bestellung 4711');
    assert.match(mail!.parsed.text ?? '', /^Fällig am 10\.03\.2026, 16:30: <b>dringend<\/b>/);
    assert.match(
      String(mail!.parsed.html),
      /<p>Fällig am 10\.03\.2026, 16:30: &lt;b&gt;dringend&lt;\/b&gt;<\/p>/,
    );

    const previewed = await preview(h, { event, user_id: 'anna' });
    assert.equal(previewed.template_id, 'po-de');
    assert.equal(previewed.subject, mail!.parsed.subject);
    assert.ok(mail!.parsed.text?.startsWith(previewed.text), `${previewed.text} / ${mail!.parsed.text}`);
  });
}
