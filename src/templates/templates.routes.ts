import { auditAdmin } from '../audit/audit.repo.ts';
import { iso } from '../clock.ts';
import type { TemplateRow } from '../db/tables.ts';
import type { App, Deps } from '../deps.ts';
import { notFound } from '../errors.ts';
import { decodeCursor, Page, toPage } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import { previewMessage } from './preview.ts';
import {
  deleteTemplate,
  findTemplate,
  listTemplates,
  parseTemplateRow,
  upsertTemplate,
} from './templates.repo.ts';
import {
  assertParses,
  canonicalLocale,
  PreviewBody,
  PreviewResult,
  TemplateListQuery,
  TemplateParams,
  TemplatePut,
  TemplateShape,
} from './templates.schema.ts';

const tags = ['templates'];

function presentTemplate(row: TemplateRow) {
  const template = parseTemplateRow(row);
  return { ...template, created_at: iso(template.created_at), updated_at: iso(template.updated_at) };
}

/**
 * Admin API for message templates (LiquidJS) per event type, channel and locale, and a preview that renders one
 * the way delivery would. Which template a message gets: see `chooseTemplate` in render.ts.
 */
export async function templatesRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.put(
    '/templates/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Create or replace a template; every part must parse as LiquidJS',
        description:
          'Messages for an event pick the template whose types match, for the channel or `*`, in the ' +
          'recipient\'s locale, else its language (`de` for `de-CH`), else the default (`locale: ""`). Within a ' +
          'locale a template for the channel beats one for `*`; when several still fit, the smallest id wins.',
        params: TemplateParams,
        body: TemplatePut,
        response: { 200: TemplateShape, 201: TemplateShape },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const parts = { subject: body.subject ?? null, text: body.text, html: body.html ?? null };
      const template = {
        id: request.params.id,
        types: [...new Set(body.types)],
        channel: body.channel,
        locale: canonicalLocale(body.locale ?? '', 'body.locale'),
        ...parts,
      };
      assertParses(parts, 'body');
      const now = deps.clock.now();
      const { saved, created } = await db.transaction().execute(async (trx) => {
        const created = await upsertTemplate(trx, template, now);
        await auditAdmin(
          trx,
          now,
          created ? 'template.created' : 'template.updated',
          ['template', template.id],
          { types: template.types, channel: template.channel, locale: template.locale },
        );
        return { saved: (await findTemplate(trx, template.id))!, created };
      });
      reply.code(created ? 201 : 200);
      return presentTemplate(saved);
    },
  );

  app.get(
    '/templates',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'List templates by id',
        querystring: TemplateListQuery,
        response: { 200: Page(TemplateShape) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const rows = await listTemplates(db, {
        after: decodeCursor(request.query.cursor),
        channel: request.query.channel,
        limit: limit + 1,
      });
      return toPage(rows, limit, (r) => r.id, presentTemplate);
    },
  );

  app.get(
    '/templates/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Get a template',
        params: TemplateParams,
        response: { 200: TemplateShape },
      },
    },
    async (request) => {
      const row = await findTemplate(db, request.params.id);
      if (row === undefined) throw notFound('Template', request.params.id);
      return presentTemplate(row);
    },
  );

  app.delete(
    '/templates/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary:
          'Delete a template; messages fall back to the next template that fits, or the plain rendering',
        params: TemplateParams,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await deleteTemplate(trx, id))) throw notFound('Template', id);
        await auditAdmin(trx, now, 'template.deleted', ['template', id]);
      });
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/templates/preview',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Render a template for a sample event and recipient; nothing is stored or sent',
        body: PreviewBody,
        response: { 200: PreviewResult },
      },
    },
    async (request) =>
      previewMessage(db, request.body, { now: deps.clock.now(), publicUrl: deps.config.publicUrl }),
  );
}
