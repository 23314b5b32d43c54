/** Entry point of the `iommu-sim` command. */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
