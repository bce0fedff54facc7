import { forwardRef, useId } from 'react';
import type { ReactNode } from 'react';
import type { ApiError } from '../api/client';

export interface ControlProps {
  id: string;
  'aria-invalid': true | undefined;
  'aria-describedby': string | undefined;
}

interface FieldProps {
  label: ReactNode;
  errors?: string[] | undefined;
  hint?: ReactNode;
  className?: string;
  /** Render the control with the id and ARIA wiring. */
  children: (control: ControlProps) => ReactNode;
}

/** A labelled control with an optional hint and inline error messages wired for screen readers. */
export function Field({ label, errors = [], hint, className, children }: FieldProps) {
  const id = useId();
  const invalid = errors.length > 0;
  const describedBy = [hint ? `${id}-hint` : null, invalid ? `${id}-error` : null].filter(Boolean).join(' ');
  return (
    <div className={['field', invalid ? 'field-invalid' : '', className ?? ''].filter(Boolean).join(' ')}>
      <label htmlFor={id}>{label}</label>
      {children({ id, 'aria-invalid': invalid || undefined, 'aria-describedby': describedBy || undefined })}
      {hint ? (
        <p className="hint" id={`${id}-hint`}>
          {hint}
        </p>
      ) : null}
      {invalid ? (
        <p className="field-error" id={`${id}-error`}>
          {errors.join(' ')}
        </p>
      ) : null}
    </div>
  );
}

interface CheckboxFieldProps {
  label: ReactNode;
  checked: boolean;
  onChange: (checked: boolean) => void;
  errors?: string[] | undefined;
  disabled?: boolean;
  hint?: ReactNode;
}

export function CheckboxField({ label, checked, onChange, errors = [], disabled, hint }: CheckboxFieldProps) {
  const id = useId();
  const invalid = errors.length > 0;
  const describedBy = [hint ? `${id}-hint` : null, invalid ? `${id}-error` : null].filter(Boolean).join(' ');
  return (
    <div className={invalid ? 'field field-check field-invalid' : 'field field-check'}>
      <div className="check-row">
        <input
          id={id}
          type="checkbox"
          checked={checked}
          disabled={disabled}
          onChange={(e) => onChange(e.target.checked)}
          aria-invalid={invalid || undefined}
          aria-describedby={describedBy || undefined}
        />
        <label htmlFor={id}>{label}</label>
      </div>
      {hint ? (
        <p className="hint" id={`${id}-hint`}>
          {hint}
        </p>
      ) : null}
      {invalid ? (
        <p className="field-error" id={`${id}-error`}>
          {errors.join(' ')}
        </p>
      ) : null}
    </div>
  );
}

interface ErrorSummaryProps {
  error: ApiError | null;
  /** Human labels for field keys; keys listed here are shown with their label. */
  labels?: Record<string, string>;
  /** Field keys shown next to their inputs, so the summary only counts them. */
  title?: string;
}

/** The API error message, plus every field error (labelled when a label is known). */
export const ErrorSummary = forwardRef<HTMLDivElement, ErrorSummaryProps>(function ErrorSummary(
  { error, labels = {}, title },
  ref,
) {
  if (!error) return null;
  const entries = Object.entries(error.fields);
  return (
    <div ref={ref} role="alert" tabIndex={-1} className="notice notice-error">
      <p className="notice-title">{title ?? error.message}</p>
      {title ? <p>{error.message}</p> : null}
      {entries.length > 0 ? (
        <ul className="error-list">
          {entries.flatMap(([key, messages]) =>
            messages.map((message, i) => (
              <li key={`${key}-${i}`}>
                {key === 'non_field_errors' || key === '__all__' ? message : `${labels[key] ?? key}: ${message}`}
              </li>
            )),
          )}
        </ul>
      ) : null}
      {error.requestId ? <p className="muted small">{error.requestId}</p> : null}
    </div>
  );
});
