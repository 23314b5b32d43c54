// A gate, not a style guide: the rules that keep promises from floating and async callbacks from
// being handed to code that ignores their result (CONVENTIONS.md, "Async"), and the one that keeps
// `x!` / `a[i]!` from asserting what the type already says (noUncheckedIndexedAccess is off, so an
// indexed read is already non-nullable: the `!` only misleads a reader).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'out/**', '.cache/**', '**/*.js', '**/*.cjs', '**/*.mjs', 'vitest*.config.ts'] },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.base],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unnecessary-type-assertion': 'error',
    },
  },
);
