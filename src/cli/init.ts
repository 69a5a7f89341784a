import type { Command } from 'commander';
import { CliError } from './common.ts';
import type { CaptureOptions } from '../netinit/rules.ts';

// Flag names are fixed: the injector writes them into the init container's args.
interface InitFlags {
  proxyUid: string;
  proxyGid?: string;
  inboundPort: string;
  outboundPort: string;
  inboundPorts: string;
  excludeInboundPorts: string;
  excludeOutboundPorts: string;
  includeOutboundCidrs: string;
  excludeOutboundCidrs: string;
  dryRun?: boolean;
  ipv6: string;
}

export function registerInit(program: Command): void {
  program
    .command('init')
    .description("init container: install the iptables rules that send the pod's TCP traffic through the proxy (inbound 15006, outbound 15001, uid 1337 exempt)")
    .option('--proxy-uid <uid>', "the proxy's uid; its traffic is never captured", '1337')
    .option('--proxy-gid <gid>', 'a gid whose traffic is never captured either')
    .option('--inbound-port <port>', 'where inbound TCP is redirected', '15006')
    .option('--outbound-port <port>', 'where outbound TCP is redirected', '15001')
    .option('--inbound-ports <ports>', "inbound ports to capture, comma-separated; '*' for all, '' for none", '*')
    .option('--exclude-inbound-ports <ports>', 'inbound ports never captured (15020 and 15021 are always excluded)', '')
    .option('--exclude-outbound-ports <ports>', 'outbound destination ports never captured', '')
    .option('--include-outbound-cidrs <cidrs>', "outbound destinations to capture; '*' for all, '' for none", '*')
    .option('--exclude-outbound-cidrs <cidrs>', 'outbound destinations never captured', '')
    .option('--ipv6 <mode>', "also install ip6tables rules: 'auto' (when the pod has a global IPv6 address), 'true' or 'false'", 'auto')
    .option('--dry-run', 'print the rules instead of applying them; touches nothing')
    .action(async (flags: InitFlags) => runInit(flags));
}

async function runInit(flags: InitFlags): Promise<void> {
  // Loaded here so other subcommands never pay for them.
  const rules = await import('../netinit/rules.ts');
  const apply = await import('../netinit/apply.ts');
  const { createLogger } = await import('../telemetry/logger.ts');

  if (!['auto', 'true', 'false'].includes(flags.ipv6)) {
    throw new CliError(`cinch init: --ipv6: expected auto, true or false, got ${JSON.stringify(flags.ipv6)}`, 2);
  }
  let options: CaptureOptions;
  try {
    options = rules.validateCaptureOptions({
      proxyUid: rules.parseId(flags.proxyUid, '--proxy-uid'),
      ...(flags.proxyGid === undefined ? {} : { proxyGid: rules.parseId(flags.proxyGid, '--proxy-gid') }),
      inboundPort: rules.parsePort(flags.inboundPort, '--inbound-port'),
      outboundPort: rules.parsePort(flags.outboundPort, '--outbound-port'),
      includeInboundPorts: rules.parsePortSelection(flags.inboundPorts, '--inbound-ports'),
      excludeInboundPorts: rules.parsePorts(flags.excludeInboundPorts, '--exclude-inbound-ports'),
      excludeOutboundPorts: rules.parsePorts(flags.excludeOutboundPorts, '--exclude-outbound-ports'),
      includeOutboundCidrs: rules.parseCidrSelection(flags.includeOutboundCidrs, '--include-outbound-cidrs'),
      excludeOutboundCidrs: rules.parseCidrs(flags.excludeOutboundCidrs, '--exclude-outbound-cidrs'),
      ipv6: flags.ipv6 === 'auto' ? await apply.podHasIpv6() : flags.ipv6 === 'true',
    });
  } catch (err) {
    if (err instanceof rules.CaptureConfigError) throw new CliError(`cinch init: ${err.message}`, 2);
    throw err;
  }

  if (flags.dryRun) {
    process.stdout.write(apply.renderDryRun(options));
    return;
  }
  const log = createLogger({ context: { component: 'init' } });
  try {
    await apply.applyRules(options, { log: (message, fields) => log.info(message, fields) });
  } catch (err) {
    if (err instanceof apply.NetinitError) throw new CliError(err.message, 1);
    throw err;
  }
}
