/** CORS headers shared by the example functions (folders starting with `_` are never served). */
export const corsHeaders = {
  "access-control-allow-origin": "*",
  "access-control-allow-headers": "authorization, x-client-info, apikey, content-type",
};
