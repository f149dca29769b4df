/**
 * The CA's serving certificate renews at half-life and at once on a root change. Two
 * renewals that overlap (a root change while another is issuing) must leave one
 * renewal timer armed, not one each: otherwise every overlap adds a timer for good.
 */
import t from 'tap';
import { generateRootCa, Issuer } from '../src/ca/issuer';
import { ServingCertificate } from '../src/ca/serving-cert';
import { silentLogger } from '../src/lib/log';
import { ManualClock } from './helpers/clock';

const TD = 'cluster.local';

t.test('overlapping renewals leave one timer armed', async (t) => {
  const issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  const clock = new ManualClock(Date.now());
  const serving = new ServingCertificate(() => ({ issuer, trustedRoots: [] }),
    { trustDomain: TD, dnsNames: ['weft-ca'], ipAddresses: ['127.0.0.1'], servingCertTtlMs: 3_600_000 }, silentLogger(), clock);
  await serving.serverCredentials();
  serving.begin();
  t.equal(clock.pending, 1, 'one renewal timer after begin');
  await Promise.all([serving.renewNow(), serving.renewNow()]);
  t.equal(clock.pending, 1, 'still one after two overlapping renewals');
  serving.stop();
  t.equal(clock.pending, 0, 'none after stop');
});
