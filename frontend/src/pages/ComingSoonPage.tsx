export function ComingSoonPage({ title }: { title: string }) {
  return (
    <main className="page">
      <h1>{title}</h1>
      <p className="muted">This area is coming soon.</p>
    </main>
  );
}
