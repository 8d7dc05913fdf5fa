// bun test preload: quiet logs unless asked, and expose what this machine can run.
import { setLogLevel } from "../src/log.ts";
if (process.env.TRTB_LOG_LEVEL === undefined) setLogLevel(1);
