export const PREBUILT_PLATFORMS: readonly string[];
export function prebuiltAddonPath(root: string, platform?: string, arch?: string): string;
