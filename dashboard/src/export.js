// CSV export of what a table or chart shows (pure functions, plus the browser download).

/** One CSV field: quoted when it holds a comma, a quote or a line break (RFC 4180); null/undefined are empty. */
export function csvField(value) {
  if (value === null || value === undefined) return '';
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** CSV text of `rows` (objects) in `columns` order, with a header line; lines end in CRLF. */
export function toCsv(columns, rows) {
  const lines = [columns.map(csvField).join(',')];
  for (const row of rows) lines.push(columns.map((c) => csvField(row[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

/** A file name from its parts, e.g. darkpool_blocks_latest_2026-12-02T1430Z_1h.csv (only [A-Za-z0-9._-]). */
export function exportFileName(parts) {
  const clean = parts.filter((p) => p !== null && p !== undefined && p !== '')
    .map((p) => String(p).replace(/:\d{2}(\.\d+)?Z$/, 'Z').replaceAll(':', '').replace(/[^A-Za-z0-9._-]+/g, '-'));
  return `${['darkpool', ...clean].join('_')}.csv`;
}

/** Let the browser download `text` as `name` (text/csv). */
export function downloadText(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
