// A confirmation that asks for several answers (a zone's name, its policy, a speed, a reason) on
// the page's one <dialog>, built like dom.ts's confirmDialog: resolves with the answers, or null
// when cancelled. A field can depend on another (the speed only for a speed limit), and `check`
// keeps the dialog open with a message while the answers cannot be sent.

import { h } from "./dom";

export interface FormField {
  name: string;
  label: string;
  kind?: "text" | "number" | "select";
  options?: Array<[value: string, label: string]>;
  value?: string;
  required?: boolean;
  /** Shown only while another field has this value. */
  shownWhen?: { field: string; value: string };
}

export interface FormOptions {
  title: string;
  body: string;
  confirmLabel: string;
  danger?: boolean;
  fields: FormField[];
  /** Why the answers cannot be sent (shown in the dialog), or null when they can. */
  check?: (answers: Record<string, string>) => string | null;
}

type Control = HTMLInputElement | HTMLSelectElement;

function control(field: FormField): Control {
  if (field.kind === "select") {
    return h("select", { name: field.name }, ...(field.options ?? []).map(([value, label]) => h("option", { value, selected: value === field.value }, label)));
  }
  return h("input", {
    type: field.kind === "number" ? "number" : "text",
    name: field.name,
    value: field.value ?? "",
    autocomplete: "off",
    step: field.kind === "number" ? "any" : undefined,
  });
}

export function formDialog(dialog: HTMLDialogElement, options: FormOptions): Promise<Record<string, string> | null> {
  return new Promise((resolve) => {
    const controls = new Map<string, Control>();
    const rows = options.fields.map((field) => {
      const input = control(field);
      controls.set(field.name, input);
      return { field, row: h("label", { "data-field": field.name }, field.label, input) };
    });
    const problem = h("p", { class: "notice error", role: "alert", hidden: true });
    const answers = (): Record<string, string> => Object.fromEntries([...controls].map(([name, input]) => [name, input.value.trim()]));
    const shown = (field: FormField): boolean => !field.shownWhen || controls.get(field.shownWhen.field)?.value === field.shownWhen.value;
    const relayout = (): void => {
      for (const { field, row } of rows) row.hidden = !shown(field);
    };
    const form = h(
      "form",
      { method: "dialog", onchange: relayout },
      h("h2", {}, options.title),
      h("p", {}, options.body),
      ...rows.map(({ row }) => row),
      problem,
      h(
        "div",
        { class: "dialog-buttons" },
        h("button", { type: "button", class: "secondary", value: "cancel", onclick: () => dialog.close("cancel") }, "Cancel"),
        h("button", { type: "submit", class: options.danger ? "danger" : "primary", value: "ok" }, options.confirmLabel),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = answers();
      const missing = rows.find(({ field }) => field.required && shown(field) && !values[field.name]);
      const why = missing ? `${missing.field.label}: please fill this in.` : (options.check?.(values) ?? null);
      if (why) {
        problem.textContent = why;
        problem.hidden = false;
        (missing ? controls.get(missing.field.name) : undefined)?.focus();
        return;
      }
      dialog.close("ok");
    });
    relayout();
    dialog.replaceChildren(form);
    dialog.onclose = () => {
      dialog.onclose = null;
      resolve(dialog.returnValue === "ok" ? answers() : null);
    };
    dialog.returnValue = "";
    dialog.showModal();
    controls.values().next().value?.focus();
  });
}
