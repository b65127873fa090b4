// Photos from the phone's camera, made small enough for a weak connection: a JPEG or PNG under
// 1 MiB goes as taken; anything larger (a 12 MP photo is 3–6 MB) or of another type (HEIC) is
// redrawn at most 1600 px wide as a JPEG, which the hub accepts (≤ 5 MiB, JPEG or PNG).
const KEEP_BYTES = 1024 * 1024;
const MAX_SIDE = 1600; // pixels
const QUALITY = 0.82;

export async function preparePhoto(file) {
  if (file.size <= KEEP_BYTES && ["image/jpeg", "image/png"].includes(file.type)) return file;
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  return new Promise((resolve, reject) => {
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("photo"))), "image/jpeg", QUALITY);
  });
}

// Every file of an <input type=file>, prepared.
export function preparePhotos(input) {
  return Promise.all([...(input.files ?? [])].map(preparePhoto));
}

// Thumbnails of the chosen photos under an input, drawn on canvases (no blob: URLs to revoke,
// and nothing that looks like a request).
const THUMB = 72; // CSS pixels

export function previewPhotos(input, container) {
  const files = [...(input.files ?? [])];
  container.replaceChildren(
    ...files.map((file) => {
      const canvas = document.createElement("canvas");
      canvas.className = "thumb";
      canvas.width = canvas.height = THUMB * 2;
      canvas.title = file.name;
      createImageBitmap(file)
        .then((bitmap) => {
          const side = Math.min(bitmap.width, bitmap.height);
          const x = (bitmap.width - side) / 2;
          const y = (bitmap.height - side) / 2;
          canvas.getContext("2d").drawImage(bitmap, x, y, side, side, 0, 0, canvas.width, canvas.height);
          bitmap.close();
        })
        .catch(() => undefined); // not an image the browser can draw: an empty frame
      return canvas;
    }),
  );
}
