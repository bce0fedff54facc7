import { Link, useNavigate } from 'react-router';
import { studio } from '../api/studio';
import { ErrorState, LoadingState } from '../components/StatusViews';
import { TemplateEditor, parseTags } from '../features/editor/TemplateEditor';
import { useI18n } from '../i18n/I18nContext';
import { useApi } from '../lib/useApi';

export function NewTemplatePage() {
  const { t } = useI18n();
  const navigate = useNavigate();
  const schema = useApi((signal) => studio.specSchema({ signal }), []);
  return (
    <main className="page wide">
      <p>
        <Link to="/templates">← {t('templates.title')}</Link>
      </p>
      <h1>{t('templates.newTitle')}</h1>
      {schema.state.status === 'loading' ? <LoadingState inline /> : null}
      {schema.state.status === 'error' ? <ErrorState inline error={schema.state.error} onRetry={schema.reload} /> : null}
      {schema.state.status === 'ready' ? (
        <TemplateEditor
          schema={schema.state.data}
          mode="create"
          onSave={async ({ meta, spec }) => {
            const created = await studio.createTemplate({
              title: meta.title.trim(),
              category: meta.category,
              tags: parseTags(meta.tags),
              intended_gender: meta.intended_gender,
              intended_age: meta.intended_age,
              spec,
            });
            navigate(`/templates/${created.id}`);
          }}
        />
      ) : null}
    </main>
  );
}
