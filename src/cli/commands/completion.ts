/**
 * `weft completion bash`: a bash completion script. Command names come from the
 * command table, so a new command completes without touching this file; flag names
 * are the operator commands' shared ones (the context flags from their specs).
 */
import { WeftError } from '../../lib/errors';
import { contextOptions } from '../context';
import { defineCommand } from '../io';

const SUBCOMMANDS: Record<string, string[]> = {
  namespace: ['enroll', 'unenroll', 'use-waypoint', 'list'],
  waypoint: ['add', 'remove', 'run'],
  lab: ['up', 'down', 'status', 'exec', 'app', 'ztunnel', 'waypoint', 'request', 'tcp'],
  completion: ['bash'],
};

// The context flags from their specs, so a new one completes without touching this file.
const CONTEXT_FLAGS = Object.values(contextOptions).map((s) => `--${s.flag}`);
const FLAGS = [...CONTEXT_FLAGS, '--output', '-o', '--watch', '-w', '--namespace', '-n', '--node', '--service-account', '--force',
  '--filename', '-f', '--dry-run', '--ignore-not-found', '--help'];
/** Flags whose value is a file: they complete file names (and directories, for -f DIR). */
const FILE_FLAGS = ['-f', '--filename', ...CONTEXT_FLAGS.filter((f) => f === '--context' || f === '--kubeconfig' || f.endsWith('-file'))];

export function bashCompletion(commands: readonly string[]): string {
  const subs = Object.entries(SUBCOMMANDS).map(([c, s]) => `    ${c}) subs="${s.join(' ')}" ;;`).join('\n');
  return `# weft bash completion. Load with:  source <(weft completion bash)
_weft() {
  local cur prev subs
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  if [[ \${COMP_CWORD} -eq 1 ]]; then
    COMPREPLY=( $(compgen -W "${commands.join(' ')} help version" -- "$cur") )
    return
  fi
  case "$prev" in
    -o|--output)
      case "\${COMP_WORDS[1]}" in
        apply|delete) COMPREPLY=( $(compgen -W "name json yaml" -- "$cur") ) ;;
        *) COMPREPLY=( $(compgen -W "table json yaml" -- "$cur") ) ;;
      esac
      return ;;
    ${FILE_FLAGS.join('|')}) COMPREPLY=( $(compgen -f -- "$cur") ); return ;;
  esac
  if [[ \${COMP_CWORD} -eq 2 ]]; then
    subs=""
    case "\${COMP_WORDS[1]}" in
${subs}
    esac
    if [[ -n "$subs" && "$cur" != -* ]]; then
      COMPREPLY=( $(compgen -W "$subs" -- "$cur") )
      return
    fi
  fi
  if [[ "$cur" == -* ]]; then
    COMPREPLY=( $(compgen -W "${FLAGS.join(' ')}" -- "$cur") )
  fi
}
complete -F _weft weft
`;
}

const USAGE = 'weft completion bash';

export default defineCommand({
  usage: USAGE,
  summary: 'print a shell completion script (bash)',
  description: 'Add to ~/.bashrc:  source <(weft completion bash)',
  specs: {},
  async run({ positionals }, io) {
    if (positionals.length !== 1 || positionals[0] !== 'bash') {
      throw new WeftError('WEFT_USAGE', `only bash completion is available; usage: ${USAGE}`);
    }
    // Loaded here, not at the top: main.ts loads this module lazily from its own table.
    const { COMMANDS } = require('../main') as { COMMANDS: Record<string, unknown> };
    io.stdout(bashCompletion(Object.keys(COMMANDS)));
    return 0;
  },
});
