/**
 * Lists the longest functions in src/ (lines from signature to closing brace), to keep every function short.
 * `npx tsx scripts/function-lengths.ts [limit]`: prints those over `limit` lines (default 100), longest first,
 * and exits 1 when any is over 150.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

const root = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'src');
const limit = Number(process.argv[2] ?? 100);

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

const rows: { where: string; name: string; lines: number }[] = [];
for (const file of files(root)) {
  const text = readFileSync(file, 'utf8');
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart()).line;
      const end = sf.getLineAndCharacterOfPosition(node.end).line;
      const name =
        (node as ts.FunctionDeclaration).name?.getText() ??
        (ts.isVariableDeclaration(node.parent) ? node.parent.name.getText() : '') ??
        '(anonymous)';
      rows.push({
        where: `${path.relative(path.dirname(root), file)}:${start + 1}`,
        name: name || '(anonymous)',
        lines: end - start + 1,
      });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
}
rows.sort((a, b) => b.lines - a.lines);
for (const r of rows.filter((r) => r.lines > limit))
  console.log(`${String(r.lines).padStart(5)}  ${r.name}  ${r.where}`);
process.exitCode = rows.some((r) => r.lines > 150) ? 1 : 0;
