// The classic Supabase starter: greets the name posted as JSON, or the `name` query parameter.
import { corsHeaders } from "../_shared/cors.ts";

Deno.serve(async (req) => {
  if (req.method === "OPTIONS") return new Response("ok", { headers: corsHeaders });
  let name = new URL(req.url).searchParams.get("name") ?? "world";
  if (req.method === "POST" && req.headers.get("content-type")?.includes("application/json")) {
    const body = await req.json().catch(() => ({}));
    if (typeof body.name === "string") name = body.name;
  }
  return Response.json({ message: `Hello ${name}!` }, { headers: corsHeaders });
});
