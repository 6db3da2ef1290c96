import {posix} from 'node:path'

import {ExitCode, UserError, describeError} from '../../core/errors.js'
import {parseImportedVolume, parseQmConfig, type ExistingVm} from './host-facts.js'
import type {RemoteHost} from './remote.js'

/** The cloud images the wizard can make templates of, in a fixed order: an image's VMID is the base VMID plus its index. */
export const CLOUD_IMAGES = {
  'ubuntu-24.04': {url: 'https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img', templateName: 'ubuntu-24.04-cloudinit'},
  'ubuntu-22.04': {url: 'https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img', templateName: 'ubuntu-22.04-cloudinit'},
  'debian-12': {url: 'https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2', templateName: 'debian-12-cloudinit'},
} as const
export type ImageId = keyof typeof CLOUD_IMAGES
export const IMAGE_IDS = Object.keys(CLOUD_IMAGES) as ImageId[]

export function isImageId(value: string): value is ImageId {
  return (IMAGE_IDS as string[]).includes(value)
}

/** The tag on the templates the wizard makes; clones get the provisioner's own `outpost` tag. */
export const TEMPLATE_TAG = 'outpost-template'

export interface TemplatePlan {
  image: ImageId
  vmid: number
  name: string
  /** keep: a finished template is there; create: nothing is; recreate: an unfinished one from an interrupted run is. */
  action: 'keep' | 'create' | 'recreate'
}

export interface TemplateSettings {
  storage: string
  bridge: string
  /** Directory on the host the images are downloaded to and kept in. */
  imageDir: string
  /** `cicustom` volume of the vendor snippet that installs the guest agent, like `local:snippets/outpost-vendor.yaml`. */
  vendorSnippet: string
}

/** Where each chosen image's template is or will be; a VMID held by someone else's VM is an error, never reused. */
export async function planTemplates(host: RemoteHost, images: readonly ImageId[], vms: readonly ExistingVm[], baseVmid: number): Promise<TemplatePlan[]> {
  const plans: TemplatePlan[] = []
  for (const image of images) {
    const name = CLOUD_IMAGES[image].templateName
    const existing = vms.find((vm) => vm.name === name)
    if (existing) {
      const config = parseQmConfig(await host.mustRead(['qm', 'config', String(existing.vmid)], `reading VM ${existing.vmid}`))
      plans.push({image, vmid: existing.vmid, name, action: config.template === '1' ? 'keep' : 'recreate'})
      continue
    }
    const vmid = baseVmid + IMAGE_IDS.indexOf(image)
    const holder = vms.find((vm) => vm.vmid === vmid)
    if (holder) {
      throw new UserError(`VMID ${vmid} for the ${image} template is taken by VM "${holder.name}"`, {
        code: 'vmid_taken',
        exit: ExitCode.usage,
        suggestion: `pass --template-vmid with a free range (the templates take ${IMAGE_IDS.length} VMIDs from it)`,
      })
    }
    plans.push({image, vmid, name, action: 'create'})
  }
  return plans
}

async function download(host: RemoteHost, url: string, file: string): Promise<void> {
  if ((await host.read(['test', '-s', file])).code === 0) return
  const partial = `${file}.part`
  const wget = (await host.read(['sh', '-c', 'command -v wget'])).code === 0
  if (!wget && (await host.read(['sh', '-c', 'command -v curl'])).code !== 0) {
    throw new UserError('the host has neither wget nor curl to download the cloud image', {code: 'no_downloader', suggestion: 'install one on the host: apt install wget'})
  }
  await host.change(['mkdir', '-p', posix.dirname(file)], 'making the image directory')
  try {
    await host.change(wget ? ['wget', '-q', '-O', partial, url] : ['curl', '-fsSL', '-o', partial, url], `downloading ${url}`)
  } catch (error) {
    await host.read(['rm', '-f', partial])
    throw error
  }
  // Renamed only when complete, so an interrupted download is never taken for the image.
  await host.change(['mv', partial, file], 'keeping the downloaded image')
}

/**
 * Makes one cloud-init template: download (on the host), create the VM with the guest agent and a serial console,
 * import the disk, add the cloud-init drive, boot from the disk, convert to a template. A failure after the VM exists
 * destroys it, so a half-made template never stays behind to be cloned.
 */
export async function createTemplate(host: RemoteHost, plan: TemplatePlan, settings: TemplateSettings): Promise<void> {
  const {url} = CLOUD_IMAGES[plan.image]
  const image = posix.join(settings.imageDir, posix.basename(new URL(url).pathname))
  await download(host, url, image)
  const vmid = String(plan.vmid)
  if (plan.action === 'recreate') await destroyTemplate(host, plan.vmid)
  await host.change(
    [
      'qm', 'create', vmid, '--name', plan.name, '--ostype', 'l26', '--memory', '2048', '--cores', '2',
      '--net0', `virtio,bridge=${settings.bridge}`, '--scsihw', 'virtio-scsi-pci',
      '--agent', 'enabled=1', '--serial0', 'socket', '--vga', 'serial0', '--tags', TEMPLATE_TAG,
    ],
    `creating VM ${vmid}`,
  )
  try {
    const imported = await host.change(['qm', 'importdisk', vmid, image, settings.storage], `importing the ${plan.image} disk into VM ${vmid}`)
    // A dry run imports nothing; the volume is shown as Proxmox would name it on LVM storage.
    const volume = imported === undefined ? `${settings.storage}:vm-${vmid}-disk-0` : parseImportedVolume(imported)
    await host.change(['qm', 'set', vmid, '--scsi0', volume], `attaching the disk of VM ${vmid}`)
    await host.change(['qm', 'set', vmid, '--ide2', `${settings.storage}:cloudinit`], `adding the cloud-init drive to VM ${vmid}`)
    await host.change(['qm', 'set', vmid, '--boot', 'order=scsi0'], `setting the boot order of VM ${vmid}`)
    await host.change(['qm', 'set', vmid, '--ipconfig0', 'ip=dhcp', '--cicustom', `vendor=${settings.vendorSnippet}`], `setting cloud-init defaults of VM ${vmid}`)
    await host.change(['qm', 'template', vmid], `converting VM ${vmid} to a template`)
  } catch (error) {
    const cleanup = await destroyTemplate(host, plan.vmid).then(
      () => `VM ${vmid} was destroyed`,
      (cleanupError: unknown) => `destroying VM ${vmid} also failed: ${describeError(cleanupError)}; remove it with \`qm destroy ${vmid} --purge\``,
    )
    throw new UserError(`${describeError(error)}\n  (${cleanup})`, {code: 'template_failed', exit: ExitCode.failed, suggestion: 'fix the cause shown, then run the wizard again', cause: error})
  }
}

function destroyTemplate(host: RemoteHost, vmid: number): Promise<string | undefined> {
  return host.change(['qm', 'destroy', String(vmid), '--purge', '1', '--destroy-unreferenced-disks', '1'], `destroying VM ${vmid}`)
}
