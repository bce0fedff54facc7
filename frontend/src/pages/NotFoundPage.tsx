import { Link } from 'react-router';

export function NotFoundPage() {
  return (
    <main className="page narrow">
      <h1>Page not found</h1>
      <p>
        The page you asked for does not exist. <Link to="/">Go to the studio home</Link>.
      </p>
    </main>
  );
}
